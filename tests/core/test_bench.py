"""The benchmark harness runs end to end on a tiny configuration (timings themselves are not asserted)."""

import json
import subprocess
import sys

from core.bench.measure import BenchConfig, measure
from core.bench.report import format_table


def test_measure_in_process_reports_time_and_memory():
    row = measure(BenchConfig(target="linear", length=64, dim=32, heads=4, repeats=1, threads=1))
    assert row["status"] == "ok" and row["time_ms"] > 0 and row["peak_mb"] >= 0
    floor = measure(BenchConfig(target="primal:floor", length=64, dim=32, heads=4, repeats=1, threads=1))
    assert floor["status"] == "ok"


def test_cli_writes_json_table_and_plot(tmp_path):
    cmd = [sys.executable, "-m", "core.bench", "--mechanisms", "primal", "--lengths", "32", "64", "--dim", "32",
           "--heads", "4", "--repeats", "1", "--threads", "1", "--floor", "--causal", "--out", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "bench_causal.json").read_text())
    targets = {(r["target"], r["length"]) for r in result["results"]}
    assert targets == {(t, n) for t in ("softmax", "primal", "primal:floor") for n in (32, 64)}
    assert all(r["status"] == "ok" for r in result["results"])
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
