"""Readers of the image LRA tasks (Tay et al., ICLR 2021), producing flattened uint8 pixel arrays.

- Image: CIFAR-10 python batches (``cifar-10-batches-py/data_batch_{1..5}``, ``test_batch``), converted to
  grey levels as ``tf.image.rgb_to_grayscale`` does on uint8 images and raster-flattened to 1024 pixels; train is
  the first 45,000 training images, dev the last 5,000.
- Pathfinder-32: ``pathfinder32/<difficulty>/metadata/*.npy`` read as text lines
  ``<subfolder> <file> <index> <label> ...`` naming 32 x 32 grey PNGs; a seeded random 80/10/10 split.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lra.data.arrays import DataError

CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"
GRAY_WEIGHTS = np.asarray([0.2989, 0.5870, 0.1140], dtype=np.float32)  # tf.image.rgb_to_grayscale


def rgb_to_gray(images: np.ndarray) -> np.ndarray:
    """``(M, 32, 32, 3)`` uint8 -> ``(M, 32, 32)`` uint8, as TensorFlow converts uint8 -> float -> uint8."""
    gray = (images.astype(np.float32) / 255.0) @ GRAY_WEIGHTS
    return np.clip(np.floor(gray * 255.5), 0, 255).astype(np.uint8)


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as ``(pixels (M, 1024) uint8 grey, labels (M,))``.

    Raises:
        DataError: missing or unreadable file, or arrays of the wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CIFAR-10: {path} does not exist; --raw must be the cifar-10-batches-py folder")
    try:
        with path.open("rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as error:
        raise DataError(f"CIFAR-10: {path} is not a CIFAR-10 python batch ({error!r}); re-download it") from error
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"CIFAR-10: {path} has data {data.shape} and {len(labels)} labels; expected (M, 3072) and M")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # channel-first rows -> (M, 32, 32, 3)
    return rgb_to_gray(images).reshape(len(data), 1024), labels


def read_cifar(folder: str | Path, dev_fraction: float = 0.1) -> dict[str, dict[str, np.ndarray]]:
    """The three splits of grey CIFAR-10: train = first 90 % of the training batches, dev = last 10 %."""
    folder = Path(folder)
    parts = [read_cifar_batch(folder / name) for name in tqdm(CIFAR_TRAIN, desc="cifar train batches")]
    pixels = np.concatenate([p for p, _ in parts])
    labels = np.concatenate([y for _, y in parts])
    cut = int(round(len(pixels) * (1.0 - dev_fraction)))
    test_pixels, test_labels = read_cifar_batch(folder / CIFAR_TEST)
    return {
        "train": {"pixels": pixels[:cut], "labels": labels[:cut]},
        "dev": {"pixels": pixels[cut:], "labels": labels[cut:]},
        "test": {"pixels": test_pixels, "labels": test_labels},
    }


def read_pathfinder_metadata(root: str | Path) -> list[tuple[Path, int]]:
    """``(png path, label)`` for every metadata row under ``root/metadata``.

    Raises:
        DataError: no metadata folder or files, or a row that does not parse.
    """
    root = Path(root)
    meta_folder = root / "metadata"
    files = sorted(meta_folder.glob("*.npy")) if meta_folder.is_dir() else []
    if not files:
        raise DataError(
            f"Pathfinder: no metadata/*.npy under {root}; --raw must be a difficulty folder such as "
            "lra_release/pathfinder32/curv_contour_length_14"
        )
    rows = []
    for file in files:
        for line_number, line in enumerate(file.read_text(errors="replace").splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 4:
                raise DataError(f"{file}:{line_number}: expected '<subfolder> <file> <index> <label> ...', got {line!r}")
            try:
                label = int(float(fields[3]))
            except ValueError as error:
                raise DataError(f"{file}:{line_number}: label {fields[3]!r} is not a number") from error
            if label not in (0, 1):
                raise DataError(f"{file}:{line_number}: Pathfinder labels are 0 or 1, got {label}")
            rows.append((root / fields[0] / fields[1], label))
    return rows


def read_png(path: Path, size: int = 32) -> np.ndarray | None:
    """A grey PNG as flat uint8 ``(size * size,)``; None for an empty (0-byte) file, which the reference skips.

    Raises:
        DataError: missing, unreadable or wrongly sized image.
    """
    if not path.is_file():
        raise DataError(f"Pathfinder: {path} is named in the metadata but does not exist")
    if path.stat().st_size == 0:
        return None
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as error:
        raise DataError(f"Pathfinder: {path} is not a readable PNG ({error})") from error
    if pixels.shape != (size, size):
        raise DataError(f"Pathfinder: {path} is {pixels.shape[1]}x{pixels.shape[0]}, expected {size}x{size}")
    return pixels.reshape(-1)


def read_pathfinder(
    root: str | Path, seed: int = 0, fractions: tuple[float, float] = (0.8, 0.1), size: int = 32
) -> tuple[dict[str, dict[str, np.ndarray]], int]:
    """All images of one difficulty folder, shuffled with ``seed`` and split 80/10/10.

    Returns:
        The splits and the number of empty PNGs skipped.
    """
    pixels, labels, skipped = [], [], 0
    for path, label in tqdm(read_pathfinder_metadata(root), desc="pathfinder images"):
        image = read_png(path, size)
        if image is None:
            skipped += 1
            continue
        pixels.append(image)
        labels.append(label)
    if not pixels:
        raise DataError(f"Pathfinder: every image under {root} is empty")
    pixels = np.stack(pixels)
    labels = np.asarray(labels, dtype=np.int64)
    order = np.random.default_rng(seed).permutation(len(pixels))
    n_train = int(len(order) * fractions[0])
    n_dev = int(len(order) * fractions[1])
    parts = {"train": order[:n_train], "dev": order[n_train : n_train + n_dev], "test": order[n_train + n_dev :]}
    return {name: {"pixels": pixels[idx], "labels": labels[idx]} for name, idx in parts.items()}, skipped
