"""Readers of the real release formats, on small files written here in the same formats."""

import csv
import pickle

import numpy as np
import pytest
from PIL import Image

from lra.data import images, listops, text
from lra.data.arrays import DataError, read_split
from lra.prepare import prepare


def write_listops(folder, rows_per_split=None):
    folder.mkdir(parents=True, exist_ok=True)
    rows = rows_per_split or {
        "basic_train.tsv": [("( ( ( [MAX 2 ) 9 ) ] )", 9), ("( ( ( [SM 5 ) 7 ) ] )", 2), ("( ( [MIN 3 ) ] )", 3)],
        "basic_val.tsv": [("( ( ( [MED 1 ) 8 ) ] )", 4)],
        "basic_test.tsv": [("( ( ( [MIN 6 ) ( ( ( [MAX 1 ) 7 ) ] ) ) ] )", 6)],
    }
    for name, examples in rows.items():
        with (folder / name).open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(["Source", "Target"])
            writer.writerows(examples)
    return folder


def test_listops_prepare_keeps_closing_brackets(tmp_path):
    raw = write_listops(tmp_path / "listops-1000")
    summary = prepare("listops", raw, tmp_path / "out", max_length=8, progress=False)
    assert summary["splits"]["train"]["size"] == 3
    train = read_split(tmp_path / "out", "train")
    ids = listops.TOKEN_IDS
    assert train.arrays["input_ids"][0].tolist() == [ids["[MAX"], ids["2"], ids["9"], ids["]"], 0, 0, 0, 0]
    assert train.arrays["lengths"].tolist() == [4, 4, 3]
    assert train.arrays["labels"].tolist() == [9, 2, 3]
    test = read_split(tmp_path / "out", "test")
    assert (test.arrays["input_ids"][0] == ids["]"]).sum() == 2


def test_listops_drop_brackets_reproduces_the_old_pipeline(tmp_path):
    raw = write_listops(tmp_path / "raw")
    prepare("listops", raw, tmp_path / "out", max_length=8, drop_brackets=True, progress=False)
    train = read_split(tmp_path / "out", "train")
    assert listops.TOKEN_IDS["]"] not in train.arrays["input_ids"]
    assert train.arrays["lengths"].tolist() == [3, 3, 2]


def test_listops_truncates_at_max_length(tmp_path):
    raw = write_listops(tmp_path / "raw")
    prepare("listops", raw, tmp_path / "out", max_length=2, progress=False)
    assert read_split(tmp_path / "out", "train").arrays["input_ids"].shape == (3, 2)


def test_listops_wrong_label_is_reported_with_its_line(tmp_path):
    raw = write_listops(
        tmp_path / "raw",
        {"basic_train.tsv": [("[MAX 2 9 ]", 9), ("[MIN 2 9 ]", 9)], "basic_val.tsv": [], "basic_test.tsv": []},
    )
    with pytest.raises(DataError, match=r"basic_train.tsv:3: the expression evaluates to 2 but the target is 9"):
        text.read_listops_tsv(raw / "basic_train.tsv", progress=False)


def test_listops_bad_header_and_missing_file(tmp_path):
    path = tmp_path / "basic_train.tsv"
    path.write_text("a\tb\n[MAX 1 ]\t1\n")
    with pytest.raises(DataError, match="header"):
        text.read_listops_tsv(path, progress=False)
    with pytest.raises(DataError, match="does not exist"):
        text.read_listops_tsv(tmp_path / "missing.tsv", progress=False)


def write_imdb(root):
    reviews = {
        "train": {"pos": ["Great film!", "Loved it <br />"], "neg": ["Awful.", "caf\u00e9 bad"]},
        "test": {"pos": ["Fine"], "neg": ["Nope", "Bad"]},
    }
    for split, classes in reviews.items():
        for name, texts in classes.items():
            (root / split / name).mkdir(parents=True)
            for index, review in enumerate(texts):
                (root / split / name / f"{index}_7.txt").write_text(review, encoding="utf-8")
    return root


def test_imdb_byte_level_with_dev_equal_to_test(tmp_path):
    raw = write_imdb(tmp_path / "aclImdb")
    prepare("text", raw, tmp_path / "out", max_length=6, progress=False)
    train = read_split(tmp_path / "out", "train")
    assert train.arrays["labels"].tolist() == [0, 0, 1, 1]  # neg files first, in sorted order
    assert train.arrays["input_ids"][0].tolist() == [b + 1 for b in b"Awful."]
    cafe = "caf\u00e9 bad".encode()[:6]
    assert train.arrays["input_ids"][1].tolist() == [b + 1 for b in cafe]
    assert train.arrays["lengths"].tolist() == [6, 6, 6, 6]
    dev, test = read_split(tmp_path / "out", "dev"), read_split(tmp_path / "out", "test")
    np.testing.assert_array_equal(dev.arrays["input_ids"], test.arrays["input_ids"])
    assert test.arrays["lengths"].tolist() == [4, 3, 4]


def test_imdb_missing_class_folder(tmp_path):
    (tmp_path / "aclImdb" / "train" / "pos").mkdir(parents=True)
    with pytest.raises(DataError, match="neg"):
        text.read_imdb_split(tmp_path / "aclImdb" / "train", progress=False)


def write_aan(folder):
    folder.mkdir(parents=True)
    rows = {
        "new_aan_pairs.train.tsv": ["1.0\tP1\tP2\tabc\txyz12", "0.0\tP3\tP4\thello\tw"],
        "new_aan_pairs.eval.tsv": ["0.0\tP5\tP6\tq\tr"],
        "new_aan_pairs.test.tsv": ["1.0\tP7\tP8\tlong text here\ts"],
    }
    for name, lines in rows.items():
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def test_aan_pairs_are_two_byte_documents(tmp_path):
    raw = write_aan(tmp_path / "tsv_data")
    prepare("retrieval", raw, tmp_path / "out", max_length=4, progress=False)
    train = read_split(tmp_path / "out", "train")
    assert train.kind == "pair"
    assert train.arrays["labels"].tolist() == [1, 0]
    assert train.arrays["input_ids_0"][0].tolist() == [b + 1 for b in b"abc"] + [0]
    assert train.arrays["input_ids_1"][0].tolist() == [b + 1 for b in b"xyz1"]
    assert train.arrays["lengths_1"].tolist() == [4, 1]


def test_aan_bad_row_is_reported(tmp_path):
    path = tmp_path / "new_aan_pairs.train.tsv"
    path.write_text("1.0\tP1\tP2\tonly four columns\n")
    with pytest.raises(DataError, match="expected 5 tab-separated columns"):
        text.read_aan_tsv(path, progress=False)


def write_cifar(folder, rng):
    folder.mkdir(parents=True)
    batches = {}
    for name in (*images.CIFAR_TRAIN, images.CIFAR_TEST):
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=4).tolist()
        with (folder / name).open("wb") as handle:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, handle)
        batches[name] = (data, labels)
    return batches


def test_cifar_grey_levels_and_splits(tmp_path):
    batches = write_cifar(tmp_path / "cifar-10-batches-py", np.random.default_rng(0))
    prepare("image", tmp_path / "cifar-10-batches-py", tmp_path / "out", progress=False)
    train, dev = read_split(tmp_path / "out", "train"), read_split(tmp_path / "out", "dev")
    assert len(train) == 18 and len(dev) == 2  # 90/10 of 20 training images
    data, labels = batches["data_batch_1"]
    red, green, blue = data[0, :1024], data[0, 1024:2048], data[0, 2048:]
    expected = np.floor((0.2989 * red + 0.5870 * green + 0.1140 * blue) / 255.0 * 255.5)
    np.testing.assert_allclose(train.arrays["pixels"][0].astype(float), np.clip(expected, 0, 255), atol=1)
    assert train.arrays["labels"][:4].tolist() == labels
    last, last_labels = batches["data_batch_5"]
    assert dev.arrays["labels"].tolist() == last_labels[2:]
    assert read_split(tmp_path / "out", "test").arrays["pixels"].shape == (4, 1024)


def test_cifar_pure_colours():
    white = np.full((1, 1, 1, 3), 255, dtype=np.uint8)
    black = np.zeros((1, 1, 1, 3), dtype=np.uint8)
    assert images.rgb_to_gray(white).item() == 255 and images.rgb_to_gray(black).item() == 0


def test_cifar_corrupt_batch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a CIFAR-10 python batch"):
        images.read_cifar_batch(folder / "data_batch_1")


def write_pathfinder(root, count, rng):
    (root / "imgs" / "0").mkdir(parents=True)
    (root / "metadata").mkdir()
    rows, labels = [], []
    for k in range(count):
        pixels = rng.integers(0, 256, size=(32, 32), dtype=np.uint8)
        Image.fromarray(pixels, mode="L").save(root / "imgs" / "0" / f"sample_{k}.png")
        label = k % 2
        rows.append(f"imgs/0 sample_{k}.png {k} {label} 1.0 14 4 2 1 1 1")
        labels.append(label)
    (root / "imgs" / "0" / "sample_empty.png").write_bytes(b"")
    rows.append(f"imgs/0 sample_empty.png {count} 1 1.0 14 4 2 1 1 1")
    (root / "metadata" / "0.npy").write_text("\n".join(rows) + "\n")
    return labels


def test_pathfinder_metadata_and_pngs(tmp_path):
    root = tmp_path / "pathfinder32" / "curv_contour_length_14"
    write_pathfinder(root, 20, np.random.default_rng(1))
    summary = prepare("pathfinder", root, tmp_path / "out", seed=3, progress=False)
    assert summary["empty_images_skipped"] == 1
    sizes = {name: info["size"] for name, info in summary["splits"].items()}
    assert sizes == {"train": 16, "dev": 2, "test": 2}
    train = read_split(tmp_path / "out", "train")
    assert train.arrays["pixels"].dtype == np.uint8 and train.arrays["pixels"].shape == (16, 1024)
    originals = {}
    for k in range(20):
        with Image.open(root / "imgs" / "0" / f"sample_{k}.png") as image:
            originals[np.asarray(image).tobytes()] = k % 2
    for pixels, label in zip(train.arrays["pixels"], train.arrays["labels"]):
        assert originals[pixels.tobytes()] == label


def test_pathfinder_missing_png_and_metadata(tmp_path):
    root = tmp_path / "curv"
    (root / "metadata").mkdir(parents=True)
    with pytest.raises(DataError, match="no metadata"):
        images.read_pathfinder_metadata(root)
    (root / "metadata" / "0.npy").write_text("imgs/0 sample_0.png 0 1 1.0\n")
    with pytest.raises(DataError, match="does not exist"):
        images.read_pathfinder(root)


def test_prepare_errors_on_missing_raw_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare("listops", tmp_path / "nowhere", tmp_path / "out", progress=False)


def test_corrupt_split_arrays_are_reported(tmp_path):
    raw = write_listops(tmp_path / "raw")
    prepare("listops", raw, tmp_path / "out", max_length=8, progress=False)
    (tmp_path / "out" / "train" / "labels.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DataError, match="corrupt"):
        read_split(tmp_path / "out", "train")
    with pytest.raises(DataError, match="no prepared split"):
        read_split(tmp_path / "nothing", "train")
