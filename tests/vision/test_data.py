"""Datasets: idx files, Fashion-MNIST, ImageFolder layouts, the ImageNet-100 list and subset builder, transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets

from vision.config import TrainConfig
from vision.data import (
    FASHION_MNIST_DIR,
    DatasetInfo,
    FashionMNIST,
    build_dataset,
    build_transform,
    dataset_info,
    read_idx,
)
from vision.imagenet100 import build_imagenet100, imagenet100_classes


def test_idx_round_trip(tmp_path, idx_writer):
    array = np.random.default_rng(0).integers(0, 256, (5, 3, 4))
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        idx_writer(tmp_path / name, array)
        np.testing.assert_array_equal(read_idx(tmp_path / name), array)
    (tmp_path / "short").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))
    with pytest.raises(ValueError, match="header says"):
        read_idx(tmp_path / "short")


def test_fashion_mnist_from_idx_files(fashion_dir):
    train = FashionMNIST(fashion_dir, train=True)
    test = FashionMNIST(fashion_dir, train=False)
    assert len(train) == 40 and len(test) == 20
    image, label = train[13]
    assert image.mode == "L" and image.size == (28, 28) and label == 3


def test_fashion_mnist_missing_files_say_what_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        FashionMNIST(tmp_path)


def test_image_folder_layout_errors(tmp_path, image_folder):
    dataset = build_dataset("folder", image_folder, "train")
    assert dataset.classes == ["a", "b", "c"] and len(dataset) == 24
    with pytest.raises(FileNotFoundError, match="ImageFolder layout"):
        build_dataset("folder", tmp_path, "train")
    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        build_dataset("folder", tmp_path, "val")
    with pytest.raises(ValueError, match="unknown dataset"):
        build_dataset("cifar", image_folder, "train")


def test_imagenet100_list():
    classes = imagenet100_classes()
    assert len(classes) == 100 == len(set(classes))
    assert all(wnid.startswith("n") and len(wnid) == 9 for wnid in classes)
    assert classes[0] == "n02869837" and classes[-1] == "n02090622"


def test_build_imagenet100_by_links(tmp_path, folder_factory):
    wnids = imagenet100_classes()
    imagenet = folder_factory(tmp_path / "in1k", wnids + ["n99999999"], {"train": 1, "val": 1}, size=8)
    summary = build_imagenet100(imagenet, tmp_path / "in100")
    assert summary == {"train": {"linked": 100}, "val": {"linked": 100}}
    assert build_imagenet100(imagenet, tmp_path / "in100")["val"] == {"kept": 100}
    subset = build_dataset("imagenet100", tmp_path / "in100", "val")
    assert len(subset.classes) == 100 and len(subset) == 100
    assert (tmp_path / "in100" / "train" / wnids[0]).is_symlink()
    with pytest.raises(ValueError, match="exactly the 100"):
        build_dataset("imagenet100", imagenet, "val")


def test_build_imagenet100_reports_missing_classes(tmp_path, folder_factory):
    imagenet = folder_factory(tmp_path / "partial", imagenet100_classes()[:10], {"train": 1}, size=8)
    with pytest.raises(FileNotFoundError, match="90 of the 100"):
        build_imagenet100(imagenet, tmp_path / "out", splits=("train",))


@pytest.mark.parametrize("auto_augment", ["rand-m9-mstd0.5-inc1", "none"])
def test_deit_transforms_on_rgb_and_grayscale(auto_augment, image_folder, fashion_dir):
    config = TrainConfig(auto_augment=auto_augment)
    for name, root in (("folder", image_folder), ("fashion_mnist", fashion_dir)):
        dataset = build_dataset(name, root, "train")
        info = dataset_info(name, dataset)
        dataset.transform = build_transform(True, 32, info, config)
        image, _ = dataset[0]
        assert image.shape == (info.in_chans, 32, 32) and image.dtype == torch.float32
        evaluation = build_transform(False, 32, info, config)
        raw = dataset if isinstance(dataset, FashionMNIST) else datasets.ImageFolder(str(root / "train"))
        raw.transform = evaluation
        assert raw[0][0].shape == (info.in_chans, 32, 32)


def test_train_crop_none_keeps_the_whole_image(fashion_dir):
    dataset = build_dataset("fashion_mnist", fashion_dir, "train")
    info = dataset_info("fashion_mnist", dataset)
    plain = TrainConfig(auto_augment="none", color_jitter=0.0, reprob=0.0, hflip=0.0, train_crop="none")
    image = dataset[3][0]
    torch.testing.assert_close(build_transform(True, 28, info, plain)(image), build_transform(False, 28, info, plain)(image))
    with pytest.raises(ValueError, match="train_crop must be one of"):
        build_transform(True, 28, info, TrainConfig(train_crop="centre"))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_randaugment_posterize_at_the_top_magnitude_keeps_training(mode):
    # magnitude 10 of the increasing posterize keeps 0 bits, which recent Pillow refuses
    channels = 3 if mode == "RGB" else 1
    info = DatasetInfo(num_classes=2, in_chans=channels, img_size=32, mean=(0.5,) * channels, std=(0.25,) * channels)
    transform = build_transform(True, 32, info, TrainConfig(auto_augment="rand-m10-inc1", reprob=0.0))
    posterize = [op for step in transform.transforms for op in getattr(step, "ops", []) if op.name == "PosterizeIncreasing"]
    assert len(posterize) == 1
    posterize[0].prob = 1.0
    image = Image.new(mode, (32, 32), 200 if mode == "L" else (200, 100, 50))
    assert np.asarray(posterize[0](image)).max() == 0
    rng = np.random.default_rng(0)
    for _ in range(50):
        noisy = Image.fromarray(rng.integers(0, 256, (32, 32) + ((3,) if mode == "RGB" else ()), dtype=np.uint8))
        assert transform(noisy).shape == (len(info.mean), 32, 32)


@pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_from_the_debian_package():
    train, test = FashionMNIST(train=True), FashionMNIST(train=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.images.shape[1:] == (28, 28)
    assert np.bincount(test.targets).tolist() == [1000] * 10
