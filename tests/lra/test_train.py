"""End to end: a few training steps per task through ``python -m lra train``, resumption, and learning."""

import json

import numpy as np
import pytest

from lra.__main__ import main
from lra.data import synthetic
from lra.data.arrays import pad_ids, write_split
from lra.train import target_reached


def token_splits(folder, rng, length=24, vocab=16, classes=10, size=12):
    for split in ("train", "dev", "test"):
        sequences = [rng.integers(1, vocab, size=rng.integers(4, length + 1)) for _ in range(size)]
        ids, lengths = pad_ids(sequences, length)
        write_split(
            folder,
            split,
            {"input_ids": ids, "lengths": lengths, "labels": rng.integers(0, classes, size)},
            {"kind": "tokens", "max_length": length},
        )


def pair_splits(folder, rng, length=24, size=12):
    for split in ("train", "dev", "test"):
        ids_0, lengths_0 = pad_ids([rng.integers(1, 257, size=rng.integers(4, length)) for _ in range(size)], length)
        ids_1, lengths_1 = pad_ids([rng.integers(1, 257, size=rng.integers(4, length)) for _ in range(size)], length)
        arrays = {
            "input_ids_0": ids_0,
            "input_ids_1": ids_1,
            "lengths_0": lengths_0,
            "lengths_1": lengths_1,
            "labels": rng.integers(0, 2, size),
        }
        write_split(folder, split, arrays, {"kind": "pair", "max_length": length})


def pixel_splits(folder, rng, classes, size=4):
    for split in ("train", "dev", "test"):
        arrays = {"pixels": rng.integers(0, 256, size=(size, 1024), dtype=np.uint8), "labels": rng.integers(0, classes, size)}
        write_split(folder, split, arrays, {"kind": "pixels", "max_length": 1024})


def synthetic_splits(folder, task, length=128, size=12):
    make = synthetic.generate_adding if task == "adding" else synthetic.generate_temporal_order
    for offset, split in enumerate(("train", "dev", "test")):
        kind = "adding" if task == "adding" else "tokens"
        write_split(folder, split, make(size, length, seed=offset), {"kind": kind, "max_length": length})


def make_data(task, folder):
    rng = np.random.default_rng(0)
    if task == "listops":
        token_splits(folder, rng)
    elif task == "text":
        token_splits(folder, rng, vocab=257, classes=2)
    elif task == "retrieval":
        pair_splits(folder, rng)
    elif task in ("image", "pathfinder"):
        pixel_splits(folder, rng, 10 if task == "image" else 2)
    else:
        synthetic_splits(folder, task)


def train(task, attention, data, run_dir, *extra):
    argv = [
        "train",
        "--task",
        task,
        "--attention",
        attention,
        "--data",
        str(data),
        "--run-dir",
        str(run_dir),
        "--batch-size",
        "4",
        "--eval-every",
        "2",
        "--eval-batches",
        "1",
        "--log-every",
        "1",
        "--threads",
        "1",
        *extra,
    ]
    assert main(argv) == 0
    return json.loads((run_dir / "result.json").read_text())


@pytest.mark.parametrize(
    "task, attention",
    [
        ("listops", "primalformer"),
        ("text", "primal+trans"),
        ("retrieval", "primalformer"),
        ("image", "linear"),
        ("pathfinder", "softmax"),
        ("adding", "primalformer"),
        ("temporal_order", "linear"),
    ],
)
def test_tiny_training_run_per_task(tmp_path, task, attention):
    make_data(task, tmp_path / "data")
    result = train(task, attention, tmp_path / "data", tmp_path / "run", "--steps", "2")
    assert result["steps_done"] == 2 and result["test"]["examples"] == (4 if task in ("image", "pathfinder") else 12)
    assert np.isfinite(result["test"]["loss"])
    if task == "adding":
        assert "mse" in result["test"] and result["trivial_mse"] > 0
    else:
        assert 0 <= result["majority_accuracy"] <= 1
    for name in ("train.log", "metrics.jsonl", "metrics.csv", "curves.png", "checkpoints/last.pt"):
        assert (tmp_path / "run" / name).is_file(), name
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "dev"] == [2]


def test_resume_continues_from_the_last_checkpoint(tmp_path):
    make_data("listops", tmp_path / "data")
    first = train(
        "listops", "primalformer", tmp_path / "data", tmp_path / "run", "--steps", "4", "--set", "train.best_after_fraction=0"
    )
    assert first["steps_done"] == 4
    second = train("listops", "primalformer", tmp_path / "data", tmp_path / "run", "--steps", "6")
    assert second["steps_done"] == 6
    assert "resumed from" in (tmp_path / "run" / "train.log").read_text()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]


def test_training_learns_a_long_range_rule(tmp_path):
    """The label is the first token, and the model must carry it through attention and pooling to the head."""
    rng = np.random.default_rng(1)
    for split, size in (("train", 512), ("dev", 64), ("test", 64)):
        ids = rng.integers(1, 5, size=(size, 16)).astype(np.int16)
        ids[:, 0] = rng.integers(5, 7, size=size)
        write_split(
            tmp_path / "data",
            split,
            {"input_ids": ids, "lengths": np.full(size, 16, dtype=np.int32), "labels": ids[:, 0].astype(np.int64) - 5},
            {"kind": "tokens", "max_length": 16},
        )
    result = train(
        "listops",
        "softmax",
        tmp_path / "data",
        tmp_path / "run",
        "--steps",
        "60",
        "--batch-size",
        "16",
        "--lr",
        "3e-3",
        "--eval-every",
        "60",
        "--set",
        "train.warmup=5",
    )
    assert result["test"]["accuracy"] > 0.9 > result["majority_accuracy"] + 0.3


def test_bad_inputs_give_clear_errors(tmp_path, capsys):
    assert (
        main(
            [
                "train",
                "--task",
                "listops",
                "--attention",
                "softmax",
                "--data",
                str(tmp_path / "none"),
                "--run-dir",
                str(tmp_path / "run"),
            ]
        )
        == 2
    )
    assert "no prepared split" in capsys.readouterr().err
    make_data("listops", tmp_path / "data")
    assert (
        main(
            [
                "train",
                "--task",
                "text",
                "--attention",
                "softmax",
                "--data",
                str(tmp_path / "data"),
                "--run-dir",
                str(tmp_path / "run2"),
                "--set",
                "vocab_size=8",
            ]
        )
        == 2
    )
    assert "does not fit the vocabulary" in capsys.readouterr().err
    assert (
        main(
            [
                "train",
                "--task",
                "listops",
                "--attention",
                "softmax",
                "--data",
                str(tmp_path / "data"),
                "--run-dir",
                str(tmp_path / "run3"),
                "--set",
                "train.nope=1",
            ]
        )
        == 2
    )
    assert "unknown key" in capsys.readouterr().err
    make_data("retrieval", tmp_path / "pairs")
    assert (
        main(
            [
                "train",
                "--task",
                "listops",
                "--attention",
                "softmax",
                "--data",
                str(tmp_path / "pairs"),
                "--run-dir",
                str(tmp_path / "run4"),
            ]
        )
        == 2
    )
    assert "expects 'tokens'" in capsys.readouterr().err


def test_init_from_another_run_and_a_longer_model(tmp_path):
    synthetic_splits(tmp_path / "data", "adding")
    first = train("adding", "linear", tmp_path / "data", tmp_path / "short", "--steps", "2", "--model-length", "256",
                  "--set", "model.positions=false")  # fmt: skip
    assert first["seq_len"] == 256
    second = train("adding", "linear", tmp_path / "data", tmp_path / "long", "--steps", "2", "--model-length", "256",
                   "--set", "model.positions=false", "--init-from", str(tmp_path / "short/checkpoints/last.pt"))  # fmt: skip
    assert second["init_from"].endswith("last.pt")
    assert "weights from" in (tmp_path / "long" / "train.log").read_text()
    assert main(["train", "--task", "adding", "--attention", "linear", "--data", str(tmp_path / "data"), "--run-dir",
                 str(tmp_path / "bad"), "--model-length", "64"]) == 2  # fmt: skip


def test_stop_at_dev_ends_training_at_the_first_evaluation_that_meets_it(tmp_path):
    make_data("listops", tmp_path / "data")
    result = train("listops", "linear", tmp_path / "data", tmp_path / "run", "--steps", "6", "--stop-at-dev", "0")
    assert result["steps_done"] == 2 and result["stopped_early"]
    assert "--stop-at-dev 0.0 reached" in (tmp_path / "run" / "train.log").read_text()
    assert target_reached({"mse": 0.01, "accuracy": 0.0}, 0.02, regression=True)
    assert not target_reached({"mse": 0.03, "accuracy": 1.0}, 0.02, regression=True)
    assert not target_reached({"accuracy": 0.5}, None, regression=False)
