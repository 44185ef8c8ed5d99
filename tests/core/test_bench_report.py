"""``python -m core.bench --report``: one command writes every core table and plot and the page linking them.

The timing sweeps are replaced by synthetic rows (they run in subprocesses and are tested in test_bench.py); the
accuracy sweep and the spectra run for real on a tiny configuration.
"""

import json
import re

import pytest

import core.bench.publish as publish
from core.bench import approx
from core.bench.__main__ import main
from core.bench.report import pivot_table
from core.bench.spectra import format_spectra, index_reaching


def fake_sweep(targets, lengths, common, options, timeout):
    rows = []
    for n in lengths:
        for i, target in enumerate(targets):
            if target == "linear" and n > min(lengths):
                continue  # as if it had failed before: the runner skips longer lengths
            status = "oom" if target == "linear" else "ok"
            rows.append({"target": target, "length": n, "status": status, "time_ms": float(n + i), "peak_mb": 1.0})
    return rows


@pytest.fixture
def tiny_report(tmp_path, monkeypatch):
    monkeypatch.setattr(publish, "run_sweep", fake_sweep)
    tiny = ["--components", "posrf", "--weights", "orf", "--features", "8", "16", "--dim", "16", "--heads", "2",
            "--length", "8", "--draws", "1"]
    parse = approx.parse_args
    monkeypatch.setattr(approx, "parse_args", lambda argv: parse(tiny))
    monkeypatch.setitem(publish.SPECTRUM_SETTINGS, "quick", dict(dim=16, heads=2, length=8, batch=1))
    argv = ["--report", str(tmp_path / "results"), "--quick", "--mechanisms", "primal", "linear", "efficient",
            "--lengths", "16", "32"]
    assert main(argv) == 0
    return tmp_path / "results"


def test_report_writes_every_part_and_the_page_links_resolve(tiny_report):
    page = (tiny_report / "core.md").read_text()
    for name in ["core_bench", "core_bench_causal", "core_approx"]:
        for suffix in ["json", "md", "png"]:
            assert (tiny_report / f"{name}.{suffix}").stat().st_size > 0, f"{name}.{suffix}"
    assert (tiny_report / "core_spectrum.png").stat().st_size > 0
    links = re.findall(r"\]\(([^)#]+)\)", page)
    assert {"core_bench.png", "core_bench_causal.md", "core_approx.png", "core_spectrum.json"} <= set(links)
    for link in links:
        assert (tiny_report / link).exists() or link.startswith("../"), link
    assert "`--quick` run" in page and "python -m core.bench --report" in page


def test_report_causal_sweep_keeps_only_causal_mechanisms(tiny_report):
    causal = json.loads((tiny_report / "core_bench_causal.json").read_text())
    targets = {row["target"] for row in causal["results"]}
    assert "efficient" not in targets and {"softmax", "primal", "linear"} <= targets
    assert causal["config"]["causal"] is True
    spectra = json.loads((tiny_report / "core_spectrum.json").read_text())["spectra"]
    assert set(spectra) == {"primal", "linear", "efficient"}
    assert all(abs(curve["mean"][-1] - 1.0) < 1e-6 for curve in spectra.values())


def test_pivot_marks_failures_and_skipped_lengths():
    table = pivot_table(fake_sweep(["softmax", "linear"], [16, 32], {}, {}, 0), "time_ms", "ms")
    assert "| softmax | 16.0 | 32.0 |" in table
    assert "| linear | oom |  |" in table


def test_spectrum_table_counts_directions():
    summaries = {"flat": {"mean": [0.25, 0.5, 0.75, 1.0]}, "sharp": {"mean": [0.95, 0.99, 1.0, 1.0]}}
    assert index_reaching(summaries["flat"]["mean"], 0.5) == 2
    assert index_reaching(summaries["sharp"]["mean"], 0.99) == 2
    table = format_spectra(summaries).splitlines()
    assert table[2].startswith("| sharp | 0.95 | 1 | 1 | 2 |") and table[3].startswith("| flat | 0.25 | 2 | 4 | 4 |")
