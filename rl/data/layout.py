"""The D4RL HDF5 layout (Fu et al., 2020), read and written with h5py.

A D4RL file holds flat, time-ordered transitions: ``observations (N, S)``, ``actions (N, A)``, ``rewards (N,)``,
``terminals (N,)`` (the MDP ended) and ``timeouts (N,)`` (the time limit cut the episode). Episodes are the runs
between ``terminals | timeouts``. Extra datasets (``next_observations``, ``infos/*``) are allowed and ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
_FLOAT_KEYS = ("observations", "actions", "rewards")


def validate_layout(arrays: dict[str, np.ndarray], source: str = "data set") -> dict[str, np.ndarray]:
    """Check and normalise the D4RL arrays: float32 observations/actions/rewards, bool terminals/timeouts.

    Args:
        arrays: at least the five :data:`REQUIRED_KEYS`; ``rewards``, ``terminals`` and ``timeouts`` may be
            ``(N,)`` or ``(N, 1)``.
        source: name used in error messages (a path).

    Returns:
        The five arrays with shapes ``(N, S)``, ``(N, A)``, ``(N,)``, ``(N,)``, ``(N,)`` (plus
        ``next_observations`` when present).

    Raises:
        ValueError: naming the key and what was expected when a key is missing, has the wrong rank or length,
            or holds NaN/inf.
    """
    missing = [key for key in REQUIRED_KEYS if key not in arrays]
    if missing:
        raise ValueError(
            f"{source} is not in the D4RL layout: missing {missing}; found {sorted(arrays)}. Expected datasets "
            f"{list(REQUIRED_KEYS)} (observations (N, S), actions (N, A), rewards/terminals/timeouts (N,))"
        )
    out: dict[str, np.ndarray] = {}
    for key in REQUIRED_KEYS + ("next_observations",):
        if key not in arrays:
            continue
        value = np.asarray(arrays[key])
        if key in ("observations", "actions", "next_observations"):
            if value.ndim != 2:
                raise ValueError(f"{source}: '{key}' must be 2-d (N, features), got shape {value.shape}")
        else:
            if value.ndim == 2 and value.shape[1] == 1:
                value = value[:, 0]
            if value.ndim != 1:
                raise ValueError(f"{source}: '{key}' must be 1-d (N,), got shape {value.shape}")
        if key in ("terminals", "timeouts"):
            value = value.astype(bool)
        else:
            value = value.astype(np.float32)
            if not np.isfinite(value).all():
                raise ValueError(f"{source}: '{key}' contains NaN or inf values")
        out[key] = value
    lengths = {key: len(value) for key, value in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{source}: datasets must all have the same length N, got {lengths}")
    if lengths["observations"] == 0:
        raise ValueError(f"{source}: the data set is empty (N = 0)")
    return out


def read_d4rl_hdf5(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read a D4RL-layout HDF5 file.

    Args:
        path: the ``.hdf5`` file.

    Returns:
        ``(arrays, attributes)``: the validated arrays (see :func:`validate_layout`) and the file's root
        attributes (``env_id`` and ``behaviour`` for files written by ``python -m rl collect``).

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it is not HDF5 or not in the D4RL layout.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"data set {path} does not exist; write one with `python -m rl collect --env hopper --out {path}` "
            "or pass a D4RL .hdf5 file"
        )
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        raise ValueError(f"{path} is not a readable HDF5 file: {error}") from error
    with handle:
        arrays = {}
        for key in REQUIRED_KEYS + ("next_observations",):
            if key not in handle:
                continue
            if not isinstance(handle[key], h5py.Dataset):
                raise ValueError(f"{path}: '{key}' must be an HDF5 dataset, found a group")
            arrays[key] = handle[key][()]
        if not all(key in arrays for key in REQUIRED_KEYS):
            raise ValueError(
                f"{path} is not in the D4RL layout: missing {[k for k in REQUIRED_KEYS if k not in handle]}; "
                f"found {sorted(handle.keys())}. Expected datasets {list(REQUIRED_KEYS)}"
            )
        attributes = {key: _plain(value) for key, value in handle.attrs.items()}
    return validate_layout(arrays, str(path)), attributes


def write_d4rl_hdf5(path: str | os.PathLike, arrays: dict[str, np.ndarray], attributes: dict[str, Any] | None = None) -> Path:
    """Write arrays in the D4RL layout (validated first), atomically, gzip-compressed.

    Args:
        path: destination ``.hdf5``.
        arrays: the five :data:`REQUIRED_KEYS` and optionally ``next_observations``.
        attributes: root attributes (strings or numbers), e.g. ``{"env_id": "Hopper-v5"}``.

    Returns:
        The path written.
    """
    import h5py

    path = Path(path)
    checked = validate_layout(arrays, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with h5py.File(tmp, "w") as handle:
        for key, value in checked.items():
            handle.create_dataset(key, data=value, compression="gzip")
        for key, value in (attributes or {}).items():
            handle.attrs[key] = value
    os.replace(tmp, path)
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
