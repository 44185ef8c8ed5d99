"""``python -m rl benchmark``: train several Decision Transformer variants (Chen et al., 2021) for the same
time on one data set and compare their evaluation returns with the data set's mean episode return; the
Primal-Attention paper's claim (Chen et al., NeurIPS 2023) is that Primal.+DT matches or beats the softmax DT.

Each model trains in its own resumable run folder under ``--run-dir``; the comparison is written to
``benchmark.json``, ``benchmark.md`` and ``benchmark.png``, and the results page (``docs/results/rl.md`` by default,
see ``rl/report.py``) puts it beside the paper's Table 4.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

from core.engine import write_json
from core.engine.machine import load_average, machine_description
from rl.config import TrainConfig
from rl.plots import plot_benchmark
from rl.report import DEFAULT_REPORT, write_report
from rl.train import train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, help="D4RL-layout .hdf5 file (or d4rl:<name>, minari:<id>)")
    parser.add_argument("--models", nargs="+", default=["primal+dt", "dt"],
                        help="models to compare: dt, primal+dt or causal registry names (default: primal+dt dt)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time per model (default 10)")
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON settings shared by all models (e.g. rl/configs/cpu-benchmark.json)")
    parser.add_argument("--final-eval-episodes", type=int, default=None, help="episodes per target at the end")
    parser.add_argument("--targets", type=float, nargs="+", default=None, help="target returns (default: the paper's)")
    parser.add_argument("--seed", type=int, default=None, help="seed of every run")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/rl-benchmark"), help="output folder")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT,
                        help=f"results page to write (default {DEFAULT_REPORT}); `python -m rl report` rewrites it")
    parser.add_argument("--no-report", action="store_true", help="write no results page, only the run folder")


def main(args: argparse.Namespace) -> dict:
    if args.config is not None and not args.config.is_file():
        raise FileNotFoundError(f"config file {args.config} does not exist")
    shared = json.loads(args.config.read_text()) if args.config is not None else {}
    overrides = {"final_eval_episodes": args.final_eval_episodes, "targets": args.targets, "seed": args.seed,
                 "device": args.device}
    shared.update({k: v for k, v in overrides.items() if v is not None})
    started, load_before = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_average()
    results = {}
    for model in args.models:
        config = TrainConfig.from_dict({**shared, "dataset": args.dataset, "model": model, "max_minutes": args.minutes,
                                        "run_dir": str(args.run_dir / model.replace("+", "plus"))})
        results[model] = train(config)
    statistics = dict(next(iter(results.values()))["dataset"])
    dataset_mean = statistics["return_mean"]
    rows = {m: {"return_mean": r["best_return_mean"], "return_std": r["best_return_std"], "target": r["best_target"],
                "normalized": r["best_normalized"], "steps": r["steps"], "train_minutes": r["train_minutes"],
                "beats_dataset_mean": r["beats_dataset_mean"], "schedule": r["schedule"], "low_rank": r["low_rank"],
                "evaluations": [{k: e[k] for k in ("target", "episodes", "return_mean", "return_std", "normalized_mean")}
                                for e in r["final_evaluation"]]}
            for m, r in results.items()}
    summary = {"dataset": args.dataset, "dataset_return_mean": dataset_mean, "minutes": args.minutes, "models": rows,
               "dataset_statistics": statistics, "dataset_behaviours": _behaviours(args.dataset),
               "settings": shared, "started": started, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load_average_before": load_before, "load_average_after": load_average(),
               "machine": machine_description(), "run_dir": str(args.run_dir), "command": _command(args)}
    write_json(summary, args.run_dir / "benchmark.json")
    lines = [f"Data set {args.dataset}: mean episode return {dataset_mean:.1f}", "",
             "| model | steps | best target | mean return | std | normalised | > data set mean |",
             "|---|---|---|---|---|---|---|"]
    for model, row in rows.items():
        lines.append(f"| {model} | {row['steps']} | {row['target']:g} | {row['return_mean']:.1f} | {row['return_std']:.1f} "
                     f"| {row['normalized']:.1f} | {row['beats_dataset_mean']} |")
    (args.run_dir / "benchmark.md").write_text("\n".join(lines) + "\n")
    plot_benchmark(rows, dataset_mean, args.run_dir / "benchmark.png")
    print("\n".join(lines))
    if not args.no_report:
        print(f"wrote {write_report(summary, args.report)}")
    return summary


def _behaviours(dataset: str) -> dict | None:
    """Episodes and mean return per behaviour policy, from the summary ``python -m rl collect`` writes beside its data."""
    info = Path(dataset).with_suffix(".json")
    if not dataset.endswith(".hdf5") or not info.is_file():
        return None
    return json.loads(info.read_text()).get("behaviours")


def _command(args: argparse.Namespace) -> str:
    words = ["python", "-m", "rl", "benchmark", "--dataset", args.dataset, "--models", *args.models,
             "--minutes", f"{args.minutes:g}"]
    for flag, value in (("--config", args.config), ("--final-eval-episodes", args.final_eval_episodes),
                        ("--seed", args.seed), ("--device", args.device)):
        if value is not None:
            words += [flag, str(value)]
    if args.targets:
        words += ["--targets", *(f"{t:g}" for t in args.targets)]
    return shlex.join(words + ["--run-dir", str(args.run_dir)])
