"""Runs trained in parallel worker processes (--jobs) equal the same runs trained one after another."""

import json

import pytest
import torch

from timeseries.cli import main, plan_jobs


def test_plan_shares_cores_on_cpu_and_runs_one_at_a_time_on_gpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert plan_jobs(3, cpu, None, None) == (3, 1)
    assert plan_jobs(2, cpu, None, None) == (2, 2)
    assert plan_jobs(12, cpu, None, None) == (5, 1)  # at most one worker more than the cores
    assert plan_jobs(1, cpu, None, None) == (1, None)  # one run keeps torch's own thread choice
    assert plan_jobs(9, cpu, 2, 1) == (2, 1)  # explicit values win
    assert plan_jobs(5, gpu, None, None) == (1, None)
    with pytest.raises(ValueError, match="--jobs"):
        plan_jobs(2, cpu, 0, None)


def test_parallel_runs_match_sequential_runs(toy_root, tmp_path):
    root, _ = toy_root
    common = ["--dataset", "Toy", "--data-dir", str(root), "--model", "primalformer", "transformer", "--seeds", "3",
              "--epochs", "3", "--d-model", "16", "--num-heads", "2", "--ffn-dim", "32", "--low-rank", "4",
              "--threads", "1", "--no-progress"]
    runs = {}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        assert main([*common, "--jobs", jobs, "--out", str(out)]) == 0
        runs[jobs] = {(r["model"], r["seed"]): r for r in json.loads((out / "summary.json").read_text())["runs"]}
    assert runs["1"].keys() == runs["2"].keys()
    for key, sequential in runs["1"].items():
        parallel = runs["2"][key]
        assert parallel["accuracy"] == sequential["accuracy"] and parallel["test_loss"] == sequential["test_loss"]


def test_flush_denormals_zeroes_subnormal_arithmetic_on_cpu():
    from timeseries.cli import flush_denormals

    subnormal = torch.tensor([1e-39])
    assert (subnormal * 1.0).item() != 0.0
    try:
        flush_denormals(torch.device("cpu"))
        assert (subnormal * 1.0).item() == 0.0
    finally:
        torch.set_flush_denormal(False)
    flush_denormals(torch.device("meta"))  # other devices: nothing to set
    assert (subnormal * 1.0).item() != 0.0
