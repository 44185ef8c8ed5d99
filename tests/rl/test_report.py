"""The rl results page: a tiny benchmark writes it, ``python -m rl report`` renders the same page from the JSON."""

from __future__ import annotations

import json

from rl.__main__ import main as cli
from rl.report import PAPER_TABLE_4, render_report

TINY = {"embed_dim": 16, "num_heads": 2, "num_layers": 2, "context_length": 5, "batch_size": 8, "max_ep_len": 50,
        "warmup_steps": 1, "low_rank": 4, "max_steps": 2, "final_eval_episodes": 1, "targets": [3600, 1800]}


def test_benchmark_writes_the_results_page_and_report_renders_it_again(tiny_hopper, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY))
    run_dir, page = tmp_path / "bench", tmp_path / "results" / "rl.md"
    assert cli(["benchmark", "--dataset", str(tiny_hopper), "--models", "primal+dt", "dt", "--minutes", "5",
                "--config", str(config), "--run-dir", str(run_dir), "--report", str(page), "--seed", "4"]) == 0
    summary = json.loads((run_dir / "benchmark.json").read_text())
    text = page.read_text()

    mean = summary["dataset_return_mean"]
    assert f"mean episode return **{mean:.1f}**" in text and "6 episodes" in text
    for model, label in (("primal+dt", "Primal.+DT (`primal+dt`)"), ("dt", "DT (`dt`, softmax)")):
        row = summary["models"][model]
        line = next(line for line in text.splitlines() if line.startswith(f"| {label} |"))
        assert [e["target"] for e in row["evaluations"]] == [3600, 1800]
        for evaluation in row["evaluations"]:
            assert f"{evaluation['return_mean']:.1f} ± {evaluation['return_std']:.1f}" in line
        assert f"| {row['normalized']:.1f} |" in line and f"| {row['steps']:,} |" in line
    assert "| target 3600 | target 1800 |" in text and "2 softmax" in text and "1 primal" in text
    assert "torch thread(s)" in text and summary["machine"]["logical_cpus"] >= 1
    assert "--seed 4" in summary["command"] and "Target: Primal.+DT's mean evaluation return" in text
    assert "not comparable in absolute terms" in text
    assert all(f"| {data} | {env} | {dt} | {primal} |" in text for data, env, dt, primal in PAPER_TABLE_4)

    again = tmp_path / "again.md"
    assert cli(["report", str(run_dir), "--out", str(again)]) == 0
    assert again.read_text() == text == render_report(summary)


def test_report_without_a_benchmark_is_a_clear_error(tmp_path, capsys):
    assert cli(["report", str(tmp_path), "--out", str(tmp_path / "rl.md")]) == 2
    assert "give the --run-dir of a finished `python -m rl benchmark`" in capsys.readouterr().err
    assert not (tmp_path / "rl.md").exists()


def test_a_summary_without_run_details_still_renders():
    summary = {"dataset": "x.hdf5", "dataset_return_mean": 100.0, "minutes": 1.0,
               "models": {"dt": {"return_mean": 50.0, "return_std": 1.0, "target": 3600.0, "normalized": 2.1,
                                 "steps": 10, "train_minutes": 1.0, "beats_dataset_mean": False}}}
    text = render_report(summary)
    assert "| DT (`dt`, softmax) | - | - | 10 | 1.0 | 2.1 | no |" in text and "did not record its machine" in text
