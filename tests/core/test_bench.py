"""The benchmark harness runs end to end on a tiny configuration (timings themselves are not asserted)."""

import json
import subprocess
import sys

import pytest

from core.bench import runner
from core.bench.measure import BenchConfig, measure
from core.bench.report import format_table


def test_measure_in_process_reports_time_and_memory():
    row = measure(BenchConfig(target="linear", length=64, dim=32, heads=4, repeats=1, threads=1))
    assert row["status"] == "ok" and row["time_ms"] > 0 and row["peak_mb"] >= 0
    floor = measure(BenchConfig(target="primal:floor", length=64, dim=32, heads=4, repeats=1, threads=1))
    assert floor["status"] == "ok"


def test_cli_writes_json_table_and_plot(tmp_path):
    cmd = [sys.executable, "-m", "core.bench", "--mechanisms", "primal", "--lengths", "64", "--dim", "32",
           "--heads", "4", "--repeats", "1", "--threads", "1", "--floor", "--causal", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "bench_causal.json").read_text())
    targets = {(r["target"], r["length"]) for r in result["results"]}
    assert targets == {(t, n) for t in ("softmax", "primal", "primal:floor") for n in (64,)}
    assert all(r["status"] == "ok" and r["time_ms"] > 0 and r["peak_mb"] >= 0 for r in result["results"])
    assert (tmp_path / "bench_causal.png").stat().st_size > 0
    assert "| primal | 64 |" in done.stdout


def test_cli_rejects_non_causal_mechanism_in_causal_mode():
    done = subprocess.run([sys.executable, "-m", "core.bench", "--causal", "--mechanisms", "efficient"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "no causal form" in done.stderr


def test_table_ratios_against_softmax_and_floor():
    rows = [
        {"target": "softmax", "length": 8, "status": "ok", "time_ms": 10.0, "peak_mb": 4.0},
        {"target": "x", "length": 8, "status": "ok", "time_ms": 5.0, "peak_mb": 1.0},
        {"target": "x:floor", "length": 8, "status": "ok", "time_ms": 4.0, "peak_mb": 1.0},
    ]
    assert "| x | 8 | 5.0 | 1.0 | 0.50x | 0.25x | 1.25x | ok |" in format_table(rows)


def test_measure_parts_limit_the_result():
    config = dict(target="linear", length=32, dim=16, heads=2, repeats=1, threads=1)
    timed = measure(BenchConfig(**config, parts="time"))
    memory = measure(BenchConfig(**config, parts="memory"))
    assert "time_ms" in timed and "peak_mb" not in timed
    assert "peak_mb" in memory and "time_ms" not in memory
    with pytest.raises(ValueError, match="parts must be"):
        measure(BenchConfig(**config, parts="both"))


def test_cpu_rows_take_time_from_the_default_allocator_and_memory_from_a_fixed_mmap_threshold(monkeypatch):
    seen = []

    def fake_process(config, timeout, env):
        seen.append((config.parts, env.get("MALLOC_MMAP_THRESHOLD_")))
        row = {"status": "ok", "parts": config.parts}
        return {**row, "time_ms": 5.0} if config.parts == "time" else {**row, "peak_mb": 7.0, "time_ms": 99.0}

    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.setattr(runner, "_run_process", fake_process)
    row = runner.run_one(BenchConfig(target="linear", length=32), timeout=10)
    assert seen == [("time", None), ("memory", "131072")]
    assert (row["time_ms"], row["peak_mb"], row["parts"]) == (5.0, 7.0, "all")


def test_a_failed_timing_run_is_reported_without_a_memory_run(monkeypatch):
    calls = []
    monkeypatch.setattr(runner, "_run_process", lambda config, timeout, env: calls.append(config.parts) or
                        {"status": "oom", "parts": config.parts})
    assert runner.run_one(BenchConfig(target="linear", length=32), timeout=10)["status"] == "oom"
    assert calls == ["time"]
