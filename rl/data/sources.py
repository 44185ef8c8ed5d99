"""Where offline data comes from: a D4RL-layout HDF5 file (h5py), the ``d4rl`` package, or a Minari data set.

The ``d4rl`` package (Fu et al., 2020) needs mujoco-py and MuJoCo 2.1 and raises a plain ``Exception`` at import
when they are missing, so it is only tried for ``d4rl:<name>`` and any import failure becomes a clear error.
Its ``get_dataset()`` is used rather than ``qlearning_dataset()``, which drops the ``timeouts`` needed to split
episodes. Minari is optional in the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rl.data.layout import read_d4rl_hdf5, validate_layout
from rl.data.trajectories import Trajectory, split_trajectories

D4RL_PREFIX = "d4rl:"
MINARI_PREFIX = "minari:"


def load_dataset(spec: str) -> tuple[list[Trajectory], dict[str, Any]]:
    """Load the episodes of an offline data set.

    Args:
        spec: a path to a D4RL-layout ``.hdf5`` file, ``d4rl:<name>`` (e.g. ``d4rl:hopper-medium-v2``) or
            ``minari:<id>`` (e.g. ``minari:mujoco/hopper/medium-v0``).

    Returns:
        ``(trajectories, info)``; ``info`` holds ``source``, ``name`` and, when known, ``env_id``.

    Raises:
        FileNotFoundError: for a missing file.
        ValueError: for a file in the wrong layout.
        RuntimeError: when d4rl or minari is asked for but cannot be imported.
    """
    if spec.startswith(D4RL_PREFIX):
        name = spec[len(D4RL_PREFIX):]
        arrays = validate_layout(_d4rl_arrays(name), spec)
        return split_trajectories(arrays), {"source": "d4rl", "name": name, "env_id": name}
    if spec.startswith(MINARI_PREFIX):
        return _minari_trajectories(spec[len(MINARI_PREFIX):])
    arrays, attributes = read_d4rl_hdf5(spec)
    info = {"source": "hdf5", "name": Path(spec).stem, "path": str(Path(spec).resolve()), **attributes}
    return split_trajectories(arrays), info


def _d4rl_arrays(name: str) -> dict[str, np.ndarray]:
    try:
        import d4rl  # noqa: F401  (registers the D4RL gym environments)
        import gym
    except Exception as error:  # d4rl raises a bare Exception when MuJoCo 2.1 is missing
        raise RuntimeError(
            f"d4rl:{name} needs the d4rl package with mujoco-py and MuJoCo 2.1, which failed to import ({error}). "
            f"Pass the downloaded file instead, e.g. ~/.d4rl/datasets/{name.replace('-', '_', 1)}.hdf5"
        ) from error
    return gym.make(name).get_dataset()


def _minari_trajectories(dataset_id: str) -> tuple[list[Trajectory], dict[str, Any]]:
    try:
        import minari
    except Exception as error:
        raise RuntimeError(f"minari:{dataset_id} needs the minari package: pip install minari ({error})") from error
    dataset = minari.load_dataset(dataset_id)
    trajectories = []
    for episode in dataset.iterate_episodes():
        observations = np.asarray(episode.observations)
        if observations.ndim != 2:
            raise ValueError(f"minari:{dataset_id}: expected array observations (T + 1, S), got {observations.shape}")
        steps = len(episode.rewards)
        trajectories.append(
            Trajectory(
                observations=observations[:steps].astype(np.float32),
                actions=np.asarray(episode.actions, dtype=np.float32),
                rewards=np.asarray(episode.rewards, dtype=np.float32),
                terminal=bool(np.asarray(episode.terminations)[-1]),
            )
        )
    if not trajectories:
        raise ValueError(f"minari:{dataset_id} has no episodes")
    env_spec = getattr(dataset, "env_spec", None)
    env_id = getattr(env_spec, "id", None) or dataset_id
    return trajectories, {"source": "minari", "name": dataset_id, "env_id": env_id}
