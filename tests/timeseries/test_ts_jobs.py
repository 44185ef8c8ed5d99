"""Runs trained in parallel worker processes (--jobs) equal the same runs trained one after another."""

import json
import sys

import pytest
import torch

from timeseries.cli import _worker_modules, _worker_pool, main, plan_jobs


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


def _imported(modules: list[str]) -> list[str]:
    """Which of ``modules`` the worker running this has imported."""
    return [name for name in modules if name in sys.modules]


def test_workers_start_with_the_training_code_and_every_mechanism_imported():
    """Workers are forked from a fork server that imported torch, the training code and the registry's mechanisms
    once (spawned workers imported them each: about 3.5 CPU-s apiece on two cores)."""
    modules = _worker_modules()
    assert "timeseries.cli" in modules and "core.attention.primal" in modules
    with _worker_pool(2) as pool:
        assert pool.submit(_imported, modules).result(timeout=120) == modules


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
