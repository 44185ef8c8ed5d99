"""Pictures and tables of vision runs: loss and validation accuracy per epoch, and a Markdown table comparing runs
(as Table 7a of Primal-Attention, Chen et al., NeurIPS 2023: accuracy, time per 1K steps, memory)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.engine.plotting import pyplot, save_figure


def plot_training_curves(rows: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Plot training loss (and its KSVD part) and validation top-1/top-5 against epochs.

    Args:
        rows: the per-epoch rows of ``metrics.jsonl`` (keys ``epoch``, ``train_loss``, ``train_ksvd_loss``,
            ``val_top1``, ``val_top5``; evaluation keys may be absent on some rows).
        path: image file to write.
        title: figure title.
    """
    plt = pyplot()

    fig, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [row["epoch"] + 1 for row in rows]
    loss_axis.plot(epochs, [row["train_loss"] for row in rows], marker="o", label="train loss")
    if any(row.get("train_ksvd_loss") for row in rows):
        loss_axis.plot(epochs, [row["train_ksvd_loss"] for row in rows], marker=".", label="KSVD loss")
        loss_axis.set_yscale("log")
    loss_axis.set_xlabel("epoch")
    loss_axis.legend()
    loss_axis.grid(alpha=0.3)
    evaluated = [row for row in rows if "val_top1" in row]
    for key, label in (("val_top1", "val top-1"), ("val_top5", "val top-5"), ("ema_top1", "EMA top-1")):
        points = [(row["epoch"] + 1, row[key]) for row in evaluated if key in row]
        if points:
            acc_axis.plot(*zip(*points), marker="o", label=label)
    acc_axis.set_xlabel("epoch")
    acc_axis.set_ylabel("accuracy (%)")
    acc_axis.legend()
    acc_axis.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path)


def results_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of run summaries (keys as written by ``python -m vision compare``)."""
    columns = [("run", "{}"), ("model", "{}"), ("primal_blocks", "{}"), ("parameters", "{:,}"), ("epochs", "{}"),
               ("minutes", "{:.1f}"), ("top1", "{:.2f}"), ("best_top1", "{:.2f}"), ("train_images_per_s", "{:.0f}"),
               ("seconds_per_1k_steps", "{:.0f}"), ("peak_memory_gb", "{:.2f}")]
    lines = ["| " + " | ".join(name for name, _ in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [fmt.format(row[name]) if row.get(name) is not None else "-" for name, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
