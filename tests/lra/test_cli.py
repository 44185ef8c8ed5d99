"""The command line: help for every command, generate -> prepare round trips, the efficiency protocol and table."""

import json

import numpy as np
import pytest

from lra.__main__ import build_parser, main
from lra.data import listops, synthetic
from lra.data.arrays import read_split
from lra.data.connectivity import connectivity_label
from lra.efficiency import format_table, measure


@pytest.mark.parametrize("command", ["generate", "prepare", "train", "efficiency", "table", "summary"])
def test_every_command_explains_its_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in build_parser()._subparsers._group_actions[0].choices[command]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help"
    assert "usage" in text


def test_generate_listops_then_prepare(tmp_path):
    assert (
        main(
            [
                "generate",
                "listops",
                "--out",
                str(tmp_path / "raw"),
                "--train",
                "20",
                "--dev",
                "5",
                "--test",
                "5",
                "--min-length",
                "5",
                "--max-length",
                "40",
                "--prepare-to",
                str(tmp_path / "arrays"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "raw" / "generate.json").read_text())
    assert summary["sizes"] == {"train": 20, "dev": 5, "test": 5}
    lines = (tmp_path / "raw" / "basic_train.tsv").read_text().splitlines()
    assert lines[0] == "Source\tTarget" and len(lines) == 21
    for line in lines[1:]:
        source, target = line.split("\t")
        assert listops.evaluate_expression(source) == int(target)
    train = read_split(tmp_path / "arrays", "train")
    assert train.arrays["input_ids"].shape == (20, 39) and train.arrays["lengths"].max() < 40


def test_generate_pathfinder_release_layout_then_prepare(tmp_path):
    raw = tmp_path / "pathfinder32" / "curv_contour_length_14"
    assert (
        main(
            [
                "generate",
                "pathfinder",
                "--out",
                str(raw),
                "--train",
                "8",
                "--dev",
                "1",
                "--test",
                "1",
                "--contour-length",
                "9",
                "--prepare-to",
                str(tmp_path / "arrays"),
            ]
        )
        == 0
    )
    assert (raw / "imgs" / "0" / "sample_0.png").is_file() and (raw / "metadata" / "0.npy").is_file()
    for name in ("train", "dev", "test"):
        split = read_split(tmp_path / "arrays", name)
        for pixels, label in zip(split.arrays["pixels"], split.arrays["labels"]):
            assert connectivity_label(np.asarray(pixels).reshape(32, 32)) == label


@pytest.mark.parametrize("task", ["adding", "temporal_order"])
def test_generate_synthetic_arrays(tmp_path, task):
    assert (
        main(["generate", task, "--out", str(tmp_path), "--train", "6", "--dev", "2", "--test", "2", "--length", "256"]) == 0
    )
    split = read_split(tmp_path, "train")
    if task == "adding":
        assert split.arrays["values"].shape == (6, 256)
    else:
        for ids, label in zip(split.arrays["input_ids"], split.arrays["labels"]):
            assert synthetic.temporal_order_label_from_tokens(ids) == label
    assert main(["generate", task, "--out", str(tmp_path / "bad"), "--length", "1000"]) == 2


def test_efficiency_measures_steps_time_and_memory():
    record = measure("listops", "primalformer", steps=1, batch_size=2, seq_len=64, device="cpu", warmup_steps=1)
    assert record["ok"] and record["seconds"] > 0 and record["peak_memory_mb"] >= 0
    assert record["layers"] == ["primal", "primal"] and record["seq_len"] == 64


def test_efficiency_table_reports_factors_against_the_transformer():
    records = [
        {"task": "listops", "attention": "softmax", "seconds": 200.0, "peak_memory_mb": 5500.0, "ok": True},
        {"task": "listops", "attention": "primalformer", "seconds": 50.0, "peak_memory_mb": 700.0, "ok": True},
        {"task": "listops", "attention": "linear", "ok": False, "error": "boom"},
    ]
    table = format_table(records, ["listops", "text"], ["softmax", "primalformer", "linear"])
    assert "| primalformer | 50.0 (4.0x) | - |" in table
    assert "| primalformer | 700.0 (7.9x) | - |" in table
    assert "| linear | failed | - |" in table
    assert "| softmax | 200.0 | - |" in table


def test_table_collects_earlier_measurements(tmp_path, capsys):
    record = {"task": "image", "attention": "softmax", "seconds": 10.0, "peak_memory_mb": 100.0, "ok": True}
    (tmp_path / "image-softmax.json").write_text(json.dumps(record))
    argv = [
        "table",
        "--collect-only",
        "--tasks",
        "image",
        "--attentions",
        "softmax",
        "primalformer",
        "--out-dir",
        str(tmp_path),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| softmax | 10.0 |" in out and "| primalformer | failed |" in out
    assert (tmp_path / "table.md").is_file() and (tmp_path / "efficiency.png").is_file()


def test_summary_compares_runs_with_their_baselines(tmp_path, capsys):
    classification = {
        "task": "listops",
        "attention": "primalformer",
        "steps_done": 76,
        "train_seconds": 600.0,
        "test": {"accuracy": 0.27, "loss": 2.0},
        "majority_accuracy": 0.14,
    }
    regression = {
        "task": "adding",
        "attention": "linear",
        "steps_done": 50,
        "train_seconds": 300.0,
        "test": {"accuracy": 0.1, "loss": 0.05, "mse": 0.05},
        "trivial_mse": 0.04,
        "trivial_accuracy": 0.2,
    }
    for name, result in (("a", classification), ("b", regression)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "result.json").write_text(json.dumps(result))
    assert main(["summary", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "| listops | primalformer | 76 | 600 | 0.2700 | - | acc 0.1400 | yes |" in out
    assert "| adding | linear | 50 | 300 | 0.1000 | 0.0500 | MSE 0.0400 | no |" in out
    assert main(["summary", str(tmp_path / "missing")]) == 2
