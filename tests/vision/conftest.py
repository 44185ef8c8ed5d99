"""Fixtures of the vision tests: generated image folders, small idx files and tiny model sizes."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def tiny() -> dict:
    """Model sizes that keep every test fast: 32 px images, 8 px patches (17 tokens), width 64, 2 blocks."""
    return {"img_size": 32, "patch_size": 8, "embed_dim": 64, "depth": 2, "num_heads": 4}


def write_idx(path: Path, array: np.ndarray) -> None:
    """An idx file of unsigned bytes (gzip-compressed when the name ends in .gz)."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as handle:
            handle.write(data)
    else:
        path.write_bytes(data)


def make_image_folder(root: Path, classes: list[str], per_class: dict[str, int], size: int = 32, seed: int = 0) -> Path:
    """``root/<split>/<class>/<i>.png``: each class has its own mean colour plus noise, so it can be learned."""
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for index, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(index * 97) % 256, (index * 57 + 80) % 256, (index * 31 + 160) % 256])
            for i in range(count):
                pixels = np.clip(colour + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def folder_factory():
    """:func:`make_image_folder` for tests that need their own layout."""
    return make_image_folder


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory) -> Path:
    """Three classes, 8 training and 4 validation 32x32 RGB images each."""
    return make_image_folder(tmp_path_factory.mktemp("folder"), ["a", "b", "c"], {"train": 8, "val": 4})


@pytest.fixture(scope="session")
def idx_writer():
    """:func:`write_idx` for tests that write their own idx files."""
    return write_idx


@pytest.fixture(scope="session")
def fashion_dir(tmp_path_factory) -> Path:
    """Fashion-MNIST-format idx files with 40 training and 20 test images."""
    root = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 40), ("t10k", 20)):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return root
