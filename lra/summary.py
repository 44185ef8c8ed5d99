"""``python -m lra summary RUN_DIR...``: one table of finished runs (test metrics against the trivial baselines)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.engine import write_json


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "summary",
        help="tabulate result.json of finished runs against the majority-class / trivial-predictor baselines",
        description="Read result.json of each run folder and print test accuracy (and MSE for Adding) next to the "
        "majority-class rate or the trivial predictor's MSE.",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with result.json)")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    parser.set_defaults(run=run)


def row(result: dict) -> dict:
    test = result["test"]
    entry = {
        "task": result["task"],
        "attention": result["attention"],
        "steps": result["steps_done"],
        "train_seconds": result["train_seconds"],
        "test_accuracy": test["accuracy"],
    }
    if "mse" in test:
        entry.update(
            test_mse=test["mse"], trivial_mse=result["trivial_mse"], beats_baseline=test["mse"] < result["trivial_mse"]
        )
    else:
        entry.update(
            majority_accuracy=result["majority_accuracy"], beats_baseline=test["accuracy"] > result["majority_accuracy"]
        )
    return entry


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for folder in args.runs:
        path = folder / "result.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; is {folder} a finished `python -m lra train` run folder?")
        rows.append(row(json.loads(path.read_text())))
    print("| task | attention | steps | train s | test acc | test MSE | baseline | beats baseline |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        mse = f"{r['test_mse']:.4f}" if "test_mse" in r else "-"
        baseline = f"MSE {r['trivial_mse']:.4f}" if "trivial_mse" in r else f"acc {r['majority_accuracy']:.4f}"
        print(
            f"| {r['task']} | {r['attention']} | {r['steps']} | {r['train_seconds']:.0f} | {r['test_accuracy']:.4f} | "
            f"{mse} | {baseline} | {'yes' if r['beats_baseline'] else 'no'} |"
        )
    if args.out is not None:
        write_json({"runs": rows}, args.out)
    return rows
