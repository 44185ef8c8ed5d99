"""Image datasets of the vision suite and their timm transforms.

- ``imagenet`` / ``imagenet100`` / ``folder``: torchvision ``ImageFolder`` layouts ``<root>/{train,val}/<class>/<image>``
  (ImageNet-1K, the 100-class CMC subset used by Primal-Attention, Chen et al., NeurIPS 2023, Table 7a, or any
  folder of that shape).
- ``fashion_mnist``: the idx files of the Debian package ``dataset-fashion-mnist`` (real images, offline).

Transforms come from timm's ``create_transform`` (RandAugment, colour jitter, random erasing), as in DeiT.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from timm.data import create_transform
from timm.data.transforms import str_to_interp_mode
from torch.utils.data import Dataset
from torchvision import datasets, transforms

from vision.config import TrainConfig
from vision.imagenet100 import imagenet100_classes

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DATASETS = ("imagenet", "imagenet100", "folder", "fashion_mnist")
SPLITS = ("train", "val")
TRAIN_CROPS = ("auto", "rrc", "pad", "none")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset: classes, channels, natural size and normalisation."""

    num_classes: int
    in_chans: int
    img_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


def _open_maybe_gzip(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (``.gz`` or raw) of unsigned bytes: images ``(n, rows, cols)`` or labels ``(n,)``.

    Raises:
        ValueError: if the header is not an idx header of unsigned bytes or the file is truncated.
    """
    path = Path(path)
    with _open_maybe_gzip(path) as handle:
        data = handle.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes (magic {data[:4].hex()})")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {body.size} values")
    return body.reshape(shape)


def _find_idx(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"Fashion-MNIST file {stem}(.gz) not found in {root}. Install the Debian package with "
        "`apt-get install dataset-fashion-mnist` (files in /usr/share/datasets/fashion-mnist) or pass "
        "--data-path to a folder holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
    )


class FashionMNIST(Dataset):
    """Fashion-MNIST (Xiao et al., 2017) from idx files: 60k training and 10k test 28x28 grayscale images.

    Args:
        root: folder with the four idx files (default: the Debian package's folder).
        train: the 60k training split; otherwise the 10k test split.
        transform: applied to the PIL image (mode "L").
    """

    classes = (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    )

    def __init__(self, root: str | os.PathLike | None = None, train: bool = True, transform=None) -> None:
        root = Path(root) if root else FASHION_MNIST_DIR
        prefix = "train" if train else "t10k"
        self.images = read_idx(_find_idx(root, f"{prefix}-images-idx3-ubyte"))
        self.targets = read_idx(_find_idx(root, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
        if self.images.ndim != 3 or len(self.images) != len(self.targets):
            raise ValueError(f"{root}: {len(self.images)} images of shape {self.images.shape[1:]} "
                             f"do not match {len(self.targets)} labels")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = Image.fromarray(self.images[index])  # (28, 28) uint8 -> mode "L"
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])


def check_image_folder(root: str | os.PathLike, split: str) -> Path:
    """Check ``<root>/<split>/<class>/<image>`` and return the split folder.

    Raises:
        FileNotFoundError: if the folder or its class sub-folders are missing (e.g. a flat ImageNet val folder).
    """
    root = Path(root)
    folder = root / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"expected an ImageFolder layout {root}/{{train,val}}/<class>/<image>, but {folder} does not exist"
        )
    classes = [entry for entry in os.scandir(folder) if entry.is_dir()]
    if not classes:
        raise FileNotFoundError(
            f"{folder} has no class sub-folders: expected {folder}/<class>/<image>. An ImageNet val folder of "
            "50000 loose images must first be sorted into one folder per class (e.g. with the widely used "
            "valprep.sh of the PyTorch ImageNet example)"
        )
    return folder


def build_dataset(name: str, root: str | os.PathLike | None, split: str, transform=None) -> Dataset:
    """A dataset by name: ``imagenet``, ``imagenet100``, ``folder`` or ``fashion_mnist``.

    Args:
        name: one of :data:`DATASETS`.
        root: dataset folder (for Fashion-MNIST: the idx folder, default the Debian package's).
        split: "train" or "val" (Fashion-MNIST's "val" is its test split).
        transform: applied to each PIL image.

    Raises:
        ValueError: unknown name or split, or an ImageNet-100 folder whose classes are not the IN-100 list.
        FileNotFoundError: missing data.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if name == "fashion_mnist":
        return FashionMNIST(root, train=split == "train", transform=transform)
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    if root is None:
        raise ValueError(f"dataset {name!r} needs --data-path pointing at a folder with train/ and val/")
    dataset = datasets.ImageFolder(str(check_image_folder(root, split)), transform=transform)
    if name == "imagenet100" and sorted(dataset.classes) != sorted(imagenet100_classes()):
        extra = sorted(set(dataset.classes) - set(imagenet100_classes()))[:5]
        missing = sorted(set(imagenet100_classes()) - set(dataset.classes))[:5]
        raise ValueError(
            f"{root}/{split} does not hold exactly the 100 ImageNet-100 classes (extra e.g. {extra}, missing e.g. "
            f"{missing}); build it with `python -m vision make-imagenet100 --imagenet <IN-1K> --output {root}`"
        )
    return dataset


def dataset_info(name: str, dataset: Dataset) -> DatasetInfo:
    """Classes, channels, natural image size and normalisation of a built dataset."""
    if name == "fashion_mnist":
        return DatasetInfo(len(FashionMNIST.classes), 1, 28, (0.2860,), (0.3530,))
    return DatasetInfo(len(dataset.classes), 3, 224, IMAGENET_MEAN, IMAGENET_STD)


def _posterize_any_bits(img: Image.Image, bits_to_keep: int, **_) -> Image.Image:
    """timm's posterize, also for 0 bits: recent Pillow (13 here) rejects 0 bits, which RandAugment's
    ``PosterizeIncreasing`` asks for at magnitude 10 (DeiT's ``rand-m9-mstd0.5-inc1`` draws it a few times in a
    hundred). Keeping no bit gives a black image, as older Pillow did."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size)
    return ImageOps.posterize(img, bits_to_keep)


def _allow_posterize_to_zero_bits(transform: transforms.Compose) -> None:
    """Point every posterize op of timm's RandAugment / AutoAugment / AugMix in ``transform`` at
    :func:`_posterize_any_bits`, so that a drawn magnitude of 10 no longer stops training with a Pillow error."""
    for step in transform.transforms:
        ops = list(getattr(step, "ops", [])) + [op for sub in getattr(step, "policy", []) for op in sub]
        for op in ops:
            if getattr(op, "name", "").startswith("Posterize"):
                op.aug_fn = _posterize_any_bits


def build_transform(training: bool, img_size: int, info: DatasetInfo, augment: TrainConfig):
    """timm's ``create_transform`` for training or evaluation, with DeiT's small-image crop.

    Args:
        training: the training transform (augmentation) or the evaluation one (resize + centre crop).
        img_size: output size; images become ``(C, img_size, img_size)`` normalised tensors.
        info: channels and normalisation of the dataset.
        augment: the augmentation fields of a :class:`~vision.config.TrainConfig` (``auto_augment``,
            ``color_jitter``, ``interpolation``, ``reprob``, ``remode``, ``recount``, ``train_crop``, ``hflip``,
            ``eval_crop_pct``). Small images (<= 32 px) are evaluated uncropped.
    """
    small = img_size <= 32
    if not training:
        return create_transform(
            img_size, is_training=False, interpolation=augment.interpolation, mean=info.mean, std=info.std,
            crop_pct=1.0 if small else augment.eval_crop_pct,
        )
    auto_augment = augment.auto_augment if augment.auto_augment not in ("", "none") else None
    transform = create_transform(
        img_size, is_training=True, auto_augment=auto_augment, color_jitter=augment.color_jitter,
        interpolation=augment.interpolation, re_prob=augment.reprob, re_mode=augment.remode,
        re_count=augment.recount, hflip=augment.hflip, mean=info.mean, std=info.std,
    )
    _allow_posterize_to_zero_bits(transform)
    if augment.train_crop not in TRAIN_CROPS:
        raise ValueError(f"train_crop must be one of {TRAIN_CROPS}, got {augment.train_crop!r}")
    if augment.train_crop == "pad" or (augment.train_crop == "auto" and small):
        transform.transforms[0] = transforms.RandomCrop(img_size, padding=max(1, img_size // 8))
    elif augment.train_crop == "none":  # the whole image, sized as for evaluation
        transform.transforms[0] = transforms.Compose([
            transforms.Resize(img_size, interpolation=str_to_interp_mode(augment.interpolation)),
            transforms.CenterCrop(img_size),
        ])
    return transform

