"""``python -m rl benchmark``: train several Decision Transformer variants (Chen et al., 2021) for the same
time on one data set and compare their evaluation returns with the data set's mean episode return; the
Primal-Attention paper's claim (Chen et al., NeurIPS 2023) is that Primal.+DT matches or beats the softmax DT.

Each model trains in its own resumable run folder under ``--run-dir``; the comparison is written to
``benchmark.json``, ``benchmark.md`` and ``benchmark.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.engine import write_json
from rl.config import TrainConfig
from rl.plots import plot_benchmark
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


def main(args: argparse.Namespace) -> dict:
    if args.config is not None and not args.config.is_file():
        raise FileNotFoundError(f"config file {args.config} does not exist")
    shared = json.loads(args.config.read_text()) if args.config is not None else {}
    overrides = {"final_eval_episodes": args.final_eval_episodes, "targets": args.targets, "seed": args.seed,
                 "device": args.device}
    shared.update({k: v for k, v in overrides.items() if v is not None})
    results = {}
    for model in args.models:
        config = TrainConfig.from_dict({**shared, "dataset": args.dataset, "model": model, "max_minutes": args.minutes,
                                        "run_dir": str(args.run_dir / model.replace("+", "plus"))})
        results[model] = train(config)
    dataset_mean = next(iter(results.values()))["dataset"]["return_mean"]
    rows = {m: {"return_mean": r["best_return_mean"], "return_std": r["best_return_std"], "target": r["best_target"],
                "normalized": r["best_normalized"], "steps": r["steps"], "train_minutes": r["train_minutes"],
                "beats_dataset_mean": r["beats_dataset_mean"]} for m, r in results.items()}
    summary = {"dataset": args.dataset, "dataset_return_mean": dataset_mean, "minutes": args.minutes, "models": rows}
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
    return summary
