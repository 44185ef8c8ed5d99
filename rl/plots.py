"""Figures of the RL suite: episode returns of a collected data set, training curves, and the benchmark's
evaluation returns against the data set's mean return (Decision Transformer, Chen et al., 2021; Primal.+DT,
Chen et al., NeurIPS 2023)."""

from __future__ import annotations

import os
from pathlib import Path

from core.engine.plotting import pyplot, save_figure


def plot_return_histogram(returns_by_label: dict[str, list[float]], path: str | os.PathLike, title: str = "") -> Path:
    """Stacked histogram of episode returns, one colour per behaviour policy."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = sorted(returns_by_label)
    ax.hist([returns_by_label[k] for k in labels], bins=30, stacked=True, label=labels)
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    ax.set_title(title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_training(rows: list[dict], path: str | os.PathLike, dataset_mean: float | None = None) -> Path:
    """Training loss and evaluation return against the step, from :class:`core.engine.MetricLogger` rows."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    train = [r for r in rows if "action_loss" in r]
    left.plot([r["step"] for r in train], [r["action_loss"] for r in train], label="action MSE")
    if any(r.get("ksvd", 0.0) for r in train):
        left.plot([r["step"] for r in train], [r["ksvd"] for r in train], label="KSVD")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.legend()
    evals = [r for r in rows if "eval_return" in r]
    for target in sorted({r["target"] for r in evals}):
        points = [r for r in evals if r["target"] == target]
        right.plot([r["step"] for r in points], [r["eval_return"] for r in points], marker="o", label=f"target {target:g}")
    if dataset_mean is not None:
        right.axhline(dataset_mean, color="grey", linestyle="--", label="data set mean")
    right.set_xlabel("step")
    right.set_ylabel("evaluation return")
    right.legend(fontsize=7)
    return save_figure(fig, path)


def plot_benchmark(results: dict[str, dict], dataset_mean: float, path: str | os.PathLike) -> Path:
    """Bar chart of each model's best mean evaluation return (with std) and the data set's mean return."""
    plt = pyplot()
    names = list(results)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    means = [results[n]["return_mean"] for n in names]
    stds = [results[n]["return_std"] for n in names]
    ax.bar(names, means, yerr=stds, capsize=4, color=["tab:blue", "tab:orange", "tab:green", "tab:red"][: len(names)])
    ax.axhline(dataset_mean, color="grey", linestyle="--", label=f"data set mean {dataset_mean:.0f}")
    ax.set_ylabel("evaluation return (best target)")
    ax.legend()
    return save_figure(fig, path)
