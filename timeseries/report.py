"""Summaries over seeds, the table beside the paper's numbers, and learning-curve plots."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from core.engine.plotting import pyplot, save_figure
from timeseries.paper import paper_accuracy


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data set, model): accuracies per seed, mean, std (sample, ddof=1; 0 for one seed), paper, time."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["dataset"], result["model"]), []).append(result)
    rows = []
    for (dataset, model), runs in groups.items():
        accuracies = [r["accuracy"] for r in runs]
        mean = sum(accuracies) / len(accuracies)
        std = math.sqrt(sum((a - mean) ** 2 for a in accuracies) / (len(accuracies) - 1)) if len(accuracies) > 1 else 0.0
        paper = paper_accuracy(dataset, model)
        rows.append({
            "dataset": dataset,
            "model": model,
            "protocol": runs[0]["protocol"],
            "seeds": [r["seed"] for r in runs],
            "accuracies": accuracies,
            "mean": mean,
            "std": std,
            "paper": paper,
            "difference": None if paper is None else mean - paper,
            "best_epochs": [r["best_epoch"] for r in runs],
            "seconds": sum(r["seconds"] for r in runs),
        })
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: data set, model, seeds, accuracy mean +- std, paper, difference, time."""
    header = ("dataset", "model", "protocol", "seeds", "accuracy %", "paper %", "diff", "time s")
    lines = [header]
    for row in rows:
        accuracy = f"{row['mean']:.1f}" + (f" ± {row['std']:.1f}" if len(row["seeds"]) > 1 else "")
        paper = "-" if row["paper"] is None else f"{row['paper']:.1f}"
        diff = "-" if row["difference"] is None else f"{row['difference']:+.1f}"
        seeds = ",".join(str(s) for s in row["seeds"])
        lines.append((row["dataset"], row["model"], row["protocol"], seeds, accuracy, paper, diff, f"{row['seconds']:.0f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    text = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
    text.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(text)


def write_summary_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """The summary rows as CSV (lists joined with spaces)."""
    path = Path(path)
    keys = list(rows[0]) if rows else []
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
    return path


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Per-epoch rows of a run (``metrics.jsonl``)."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def import_plotting() -> bool:
    """Import matplotlib now (about 0.5 s) instead of in the first :func:`plot_learning_curves`, e.g. while the
    process waits anyway; returns whether it is installed."""
    try:
        pyplot()
    except ImportError:
        return False
    return True


def plot_learning_curves(runs: dict[str, list[dict[str, Any]]], path: str | Path, title: str = "") -> Path | None:
    """Training loss, KSVD term and validation accuracy against epochs, one line per run label.

    Args:
        runs: label -> per-epoch metric rows.
        path: the PNG to write.

    Returns:
        The path, or None if matplotlib is missing or there is nothing to plot.
    """
    try:
        plt = pyplot()
    except ImportError:
        return None
    if not any(runs.values()):
        return None
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    for label, rows in runs.items():
        epochs = [r["epoch"] for r in rows]
        axes[0].plot(epochs, [r["train_ce"] for r in rows], label=label)
        if any(r.get("train_ksvd") for r in rows):
            axes[1].plot(epochs, [max(r["train_ksvd"], 1e-12) for r in rows], label=label)
        evaluated = [r for r in rows if "val_accuracy" in r]
        axes[2].plot([r["epoch"] for r in evaluated], [r["val_accuracy"] for r in evaluated], marker=".", label=label)
    axes[0].set(title="training cross-entropy", xlabel="epoch", yscale="log")
    axes[1].set(title="KSVD loss (primal layers)", xlabel="epoch", yscale="log")
    axes[2].set(title="validation accuracy (%)", xlabel="epoch")
    for axis in axes:
        axis.grid(alpha=0.3)
    axes[2].legend(fontsize=8)
    if title:
        figure.suptitle(title)
    return save_figure(figure, path, dpi=110)
