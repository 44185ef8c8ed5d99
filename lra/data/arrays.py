"""Compact on-disk splits and the PyTorch dataset over them.

A prepared task is a folder with one sub-folder per split (``train``, ``dev``, ``test``); each split holds one
``.npy`` file per array (memory-mapped when read) and ``meta.json``. Four kinds of split exist:

- ``tokens``: ``input_ids (M, L)`` integers with 0 = padding, ``lengths (M,)``, ``labels (M,)`` (ListOps, Text,
  Temporal Order).
- ``pair``: ``input_ids_0``, ``input_ids_1``, ``lengths_0``, ``lengths_1``, ``labels`` (Retrieval, two documents).
- ``pixels``: ``pixels (M, L)`` uint8 raw grey values, ``labels`` (Image, Pathfinder). Every pixel is a real
  token with id ``value + 1``; ``reference_pixel_mask=True`` reproduces the reference code, where id = value and a
  black pixel counts as padding.
- ``adding``: ``values (M, N)`` float32, ``positions (M, 2)`` the two marked positions, ``targets (M,)`` float32.
  The model input is ``(N, 2)``: [value, marker].
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = ("train", "dev", "test")
REQUIRED = {
    "tokens": ("input_ids", "lengths", "labels"),
    "pair": ("input_ids_0", "input_ids_1", "lengths_0", "lengths_1", "labels"),
    "pixels": ("pixels", "labels"),
    "adding": ("values", "positions", "targets"),
}


class DataError(ValueError):
    """Raised for missing, malformed or inconsistent data files; the message says what to do."""


@dataclass
class Split:
    """One split in memory (arrays may be memory-mapped)."""

    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.meta["kind"]

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))


def write_split(folder: str | os.PathLike, split: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Write ``arrays`` and ``meta`` (which must name the ``kind``) to ``folder/split`` atomically.

    Raises:
        DataError: if required arrays are missing or their first dimensions differ.
    """
    kind = meta.get("kind")
    if kind not in REQUIRED:
        raise DataError(f"meta['kind'] must be one of {sorted(REQUIRED)}, got {kind!r}")
    _check_arrays(arrays, kind, f"split {split!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / split
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}.", dir=folder))
    try:
        for key, value in arrays.items():
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(value))
        meta = {**meta, "split": split, "size": int(len(next(iter(arrays.values()))))}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_split(folder: str | os.PathLike, split: str, mmap: bool = True) -> Split:
    """Read ``folder/split`` written by :func:`write_split`.

    Raises:
        DataError: if the folder, ``meta.json`` or an array is missing or corrupt.
    """
    path = Path(folder) / split
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise DataError(
            f"no prepared split at {path} (expected {meta_path}); run `python -m lra prepare ...` or "
            f"`python -m lra generate ...` with --out {folder}"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise DataError(f"{meta_path} is not valid JSON ({error}); re-run the prepare/generate command") from error
    kind = meta.get("kind")
    if kind not in REQUIRED:
        raise DataError(f"{meta_path}: unknown kind {kind!r}, expected one of {sorted(REQUIRED)}")
    arrays = {}
    for key in REQUIRED[kind]:
        file = path / f"{key}.npy"
        if not file.is_file():
            raise DataError(f"{file} is missing (a {kind!r} split needs {list(REQUIRED[kind])}); re-run the prepare command")
        try:
            arrays[key] = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise DataError(f"{file} is corrupt or truncated ({error}); re-run the prepare command") from error
    _check_arrays(arrays, kind, str(path))
    return Split(arrays, meta)


def _check_arrays(arrays: dict[str, np.ndarray], kind: str, where: str) -> None:
    missing = [key for key in REQUIRED[kind] if key not in arrays]
    if missing:
        raise DataError(f"{where}: a {kind!r} split needs arrays {list(REQUIRED[kind])}, missing {missing}")
    sizes = {key: len(value) for key, value in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise DataError(f"{where}: arrays disagree on the number of examples: {sizes}")


def pad_ids(sequences: list[np.ndarray], max_length: int, dtype=np.int16) -> tuple[np.ndarray, np.ndarray]:
    """Truncate each id sequence to ``max_length`` and right-pad with 0.

    Returns:
        ``(ids, lengths)``: ``(M, max_length)`` of ``dtype`` and ``(M,)`` int32.
    """
    ids = np.zeros((len(sequences), max_length), dtype=dtype)
    lengths = np.zeros(len(sequences), dtype=np.int32)
    for row, sequence in enumerate(sequences):
        n = min(len(sequence), max_length)
        ids[row, :n] = sequence[:n]
        lengths[row] = n
    return ids, lengths


class LRADataset(Dataset):
    """Examples of a :class:`Split` as tensors.

    Args:
        split (Split): the arrays.
        reference_pixel_mask (bool): for pixel splits, id = value and black pixels are padding (reference code).
            Default False: id = value + 1 and every pixel is real.
    """

    def __init__(self, split: Split, reference_pixel_mask: bool = False) -> None:
        self.split = split
        self.kind = split.kind
        self.reference_pixel_mask = reference_pixel_mask

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        a = self.split.arrays
        if self.kind == "tokens":
            return _token_item(a["input_ids"][index], a["lengths"][index], a["labels"][index])
        if self.kind == "pair":
            first = _token_item(a["input_ids_0"][index], a["lengths_0"][index], a["labels"][index])
            second = _token_item(a["input_ids_1"][index], a["lengths_1"][index], a["labels"][index])
            return {**first, "input_ids_1": second["input_ids"], "mask_1": second["mask"]}
        if self.kind == "pixels":
            pixels = torch.from_numpy(np.asarray(a["pixels"][index], dtype=np.int64))
            if self.reference_pixel_mask:
                ids, mask = pixels, pixels > 0
            else:
                ids, mask = pixels + 1, torch.ones_like(pixels, dtype=torch.bool)
            return {"input_ids": ids, "mask": mask, "labels": torch.tensor(int(a["labels"][index]))}
        values = torch.from_numpy(np.array(a["values"][index], dtype=np.float32))
        markers = torch.zeros_like(values)
        markers[torch.from_numpy(np.asarray(a["positions"][index], dtype=np.int64))] = 1.0
        return {
            "inputs": torch.stack([values, markers], dim=-1),
            "mask": torch.ones(values.shape[0], dtype=torch.bool),
            "labels": torch.tensor(float(a["targets"][index])),
        }


def _token_item(ids: np.ndarray, length: int, label: int) -> dict[str, torch.Tensor]:
    ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))
    mask = torch.arange(ids.shape[0]) < int(length)
    return {"input_ids": ids * mask, "mask": mask, "labels": torch.tensor(int(label))}


class Collate:
    """Stack examples into a batch, padded to ``pad_to`` tokens or trimmed to the longest real sequence.

    Args:
        pad_to (int, optional): the model's sequence length (e.g. 2048 for ListOps' 2000 tokens, the reference
            layout). Ignored when ``trim`` is set.
        trim (bool): cut every batch to its longest real sequence (faster on CPU; the output of mask-respecting
            mechanisms does not change).
    """

    def __init__(self, pad_to: int | None = None, trim: bool = False) -> None:
        self.pad_to = pad_to
        self.trim = trim

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        batch = {key: torch.stack([item[key] for item in items]) for key in items[0]}
        self._fit(batch, "mask", ("input_ids", "inputs"))
        if "mask_1" in batch:
            self._fit(batch, "mask_1", ("input_ids_1",))
        return batch

    def _fit(self, batch: dict[str, torch.Tensor], mask_key: str, keys: tuple[str, ...]) -> None:
        mask = batch[mask_key]
        n = mask.shape[1]
        if self.trim:
            real = mask.any(dim=0).nonzero()
            target = int(real[-1]) + 1 if len(real) else 1
        elif self.pad_to is not None:
            target = self.pad_to
        else:
            return
        for key in (mask_key, *keys):
            if key not in batch:
                continue
            value = batch[key]
            if target <= n:
                batch[key] = value[:, :target]
            else:
                pad = torch.zeros((value.shape[0], target - n, *value.shape[2:]), dtype=value.dtype)
                batch[key] = torch.cat([value, pad], dim=1)
