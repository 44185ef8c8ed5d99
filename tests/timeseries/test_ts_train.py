"""End-to-end training on JapaneseVowels (real data), exact resumption, and the CLI on a generated data set."""

from __future__ import annotations

import json

import pytest
import torch

from timeseries.cli import main
from timeseries.config import resolve_config
from timeseries.data import load_uea, sktime_data_root
from timeseries.train import evaluation_epochs, train_run

SMALL = {"d_model": 32, "num_heads": 4, "ffn_dim": 64, "low_rank": 8, "rank_multi": 2}


def test_evaluation_schedule_is_first_every_k_and_last():
    assert sorted(evaluation_epochs(9, 2)) == [1, 2, 4, 6, 8, 9]


def test_short_run_on_japanese_vowels_beats_chance_clearly(tmp_path):
    if not (sktime_data_root() / "JapaneseVowels").is_dir():
        pytest.skip("this sktime installation does not ship JapaneseVowels")
    torch.set_num_threads(1)
    data = load_uea("JapaneseVowels")
    config = resolve_config("JapaneseVowels", "primalformer", overrides={**SMALL, "d_model": 64, "ffn_dim": 128, "epochs": 8})
    result = train_run(config, data, "primalformer", 0, tmp_path, torch.device("cpu"), progress=False)
    majority = 100.0 * torch.bincount(data.test.labels).max().item() / len(data.test)
    assert majority < 25.0
    assert result["accuracy"] >= 70.0, result  # chance is 11 %, the majority class 24 %
    assert result["ksvd_start"] > 10.0  # the unnormalised sqrt(d)-scaled input of the first primal layer
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 9))
    assert rows[-1]["train_ce"] < rows[0]["train_ce"]


def test_interrupted_run_resumes_to_the_same_result(toy_root, tmp_path, monkeypatch):
    root, _ = toy_root
    data = load_uea("Toy", root)
    config = resolve_config("Toy", "primal+trans", overrides={**SMALL, "epochs": 5, "eval_every": 1})
    device = torch.device("cpu")
    straight = train_run(config, data, "primal+trans", 3, tmp_path / "a", device, progress=False)

    import timeseries.train as train_module

    original_log = train_module.MetricLogger.log

    def failing_log(self, **row):
        if row["epoch"] == 4:
            raise KeyboardInterrupt
        original_log(self, **row)

    monkeypatch.setattr(train_module.MetricLogger, "log", failing_log)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, data, "primal+trans", 3, tmp_path / "b", device, checkpoint_every=2, progress=False)
    monkeypatch.setattr(train_module.MetricLogger, "log", original_log)
    assert (tmp_path / "b" / "checkpoint.pt").is_file()
    resumed = train_run(config, data, "primal+trans", 3, tmp_path / "b", device, checkpoint_every=2, progress=False)
    first = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    second = [json.loads(x) for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in second] == [1, 2, 3, 4, 5]
    for a, b in zip(first, second):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    assert resumed["accuracy"] == straight["accuracy"] and not (tmp_path / "b" / "checkpoint.pt").exists()
    changed = resolve_config("Toy", "primal+trans", overrides={**SMALL, "epochs": 6, "eval_every": 1})
    with pytest.raises(ValueError, match="different settings"):
        train_run(changed, data, "primal+trans", 3, tmp_path / "b", device, progress=False)


def test_cli_writes_summary_csv_and_plot(toy_root, tmp_path, capsys):
    root, _ = toy_root
    out = tmp_path / "out"
    code = main(["--dataset", "Toy", "--data-dir", str(root), "--model", "primalformer", "transformer", "--seeds", "1", "2",
                 "--epochs", "2", "--d-model", "16", "--num-heads", "2", "--ffn-dim", "32", "--low-rank", "4",
                 "--protocol", "holdout", "--out", str(out), "--no-progress"])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {(r["model"], len(r["accuracies"])) for r in summary["rows"]} == {("primalformer", 2), ("transformer", 2)}
    assert (out / "summary.csv").is_file() and (out / "Toy" / "curves_holdout.png").is_file()
    assert "primalformer" in capsys.readouterr().out


def test_cli_reports_bad_input_clearly(tmp_path, capsys):
    assert main(["--dataset", "NoSuchSet", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "NoSuchSet" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="unknown model 'nosuch'"):
        main(["--model", "nosuch", "--out", str(tmp_path / "o")])


def test_time_limit_checkpoints_after_the_current_epoch_and_resumes(toy_root, tmp_path):
    import time

    from timeseries.train import TimeLimitReached

    root, _ = toy_root
    data = load_uea("Toy", root)
    config = resolve_config("Toy", "primalformer", overrides={**SMALL, "epochs": 3})
    device = torch.device("cpu")
    with pytest.raises(TimeLimitReached, match="after epoch 1 of 3"):
        train_run(config, data, "primalformer", 0, tmp_path, device, progress=False, deadline=time.monotonic() - 1.0)
    assert (tmp_path / "checkpoint.pt").is_file()
    result = train_run(config, data, "primalformer", 0, tmp_path, device, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and result["best_epoch"] in (1, 2, 3)


def test_benchmark_times_both_loops(toy_root):
    from timeseries.benchmark import time_loop

    root, _ = toy_root
    data = load_uea("Toy", root)
    config = resolve_config("Toy", "primalformer", overrides={**SMALL, "epochs": 10})
    rows = [time_loop(config, data, "primalformer", mode, epochs=1) for mode in ("original", "suite")]
    assert [r["evaluations"] for r in rows] == [7, 6]  # epochs 1, 2, 4, 6, 8, 10 (+ the untrained model)
    assert all(r["projected_cpu_seconds"] > 0 for r in rows)
