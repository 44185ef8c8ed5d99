"""Figures of the LRA suite: learning curves of a run and the efficiency comparison (Primal-Attention, Table 3)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from core.engine.plotting import save_figure


def plot_curves(rows: list[dict], path: Path, title: str) -> Path | None:
    """Training loss and dev accuracy against steps from MetricLogger rows; None if there is nothing to plot."""
    train = [r for r in rows if r.get("kind") == "train"]
    dev = [r for r in rows if r.get("kind") == "dev"]
    if not train and not dev:
        return None
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.plot([r["step"] for r in train], [r["task_loss"] for r in train], label="train task loss")
    left.plot([r["step"] for r in dev], [r["loss"] for r in dev], "o-", label="dev loss")
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.legend()
    right.plot([r["step"] for r in dev], [r["accuracy"] for r in dev], "o-", color="tab:green")
    right.set_xlabel("step")
    right.set_ylabel("dev accuracy")
    figure.suptitle(title)
    return save_figure(figure, path)


def plot_efficiency(records: list[dict], path: Path) -> Path:
    """Bars of time and peak memory per mechanism, one group per task."""
    tasks = sorted({r["task"] for r in records})
    mechanisms = list(dict.fromkeys(r["attention"] for r in records))
    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    width = 0.8 / max(len(mechanisms), 1)
    for axis, key, label in (
        (axes[0], "seconds", "time of the measured steps (s)"),
        (axes[1], "peak_memory_mb", "peak memory (MB)"),
    ):
        for index, mechanism in enumerate(mechanisms):
            values = []
            for task in tasks:
                match = [r[key] for r in records if r["task"] == task and r["attention"] == mechanism and r.get("ok")]
                values.append(match[0] if match else 0.0)
            axis.bar([t + index * width for t in range(len(tasks))], values, width, label=mechanism)
        axis.set_xticks([t + width * (len(mechanisms) - 1) / 2 for t in range(len(tasks))], tasks)
        axis.set_ylabel(label)
    axes[0].legend(fontsize=8)
    return save_figure(figure, path)
