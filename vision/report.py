"""Benchmark reports of the vision suite: finished runs side by side with the paper's ImageNet numbers.

``python -m vision report`` turns the ``result.json`` of two or more ``python -m vision train`` runs (and, if given,
the JSON of ``python -m vision spectrum``) into a Markdown page such as ``docs/results/vision.md``, with the paper's
Table 7a (Primal-Attention, Chen et al., NeurIPS 2023) for context and the spectrum plot copied beside the page.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

# Table 7a of the paper: DeiT-Small/16 for 300 epochs; time per 1K steps and memory on their GPUs.
PAPER_TABLE_7A = (
    {"model": "DeiT-Small/16", "in100": 74.2, "in1k": 79.8, "seconds_per_1k_steps": 2425.5, "memory_gb": 14.2},
    {"model": "Primal.+DeiT-Small/16", "in100": 75.7, "in1k": 79.8, "seconds_per_1k_steps": 2330.2, "memory_gb": 14.0},
)


def run_summary(run: str | Path) -> dict[str, Any]:
    """One row per training run, read from its folder (or its ``result.json``).

    Raises:
        FileNotFoundError: if the run has no ``result.json`` (not finished, or not a run folder).
    """
    path = Path(run) / "result.json" if Path(run).is_dir() else Path(run)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: give run folders of `python -m vision train`")
    result = json.loads(path.read_text())
    train, final, config = result.get("train", {}), result.get("final", {}), result.get("config", {})
    row = {
        "run": path.parent.name, "model": result["model"], "dataset": result["dataset"],
        "primal_blocks": result["primal_blocks"], "depth": config.get("depth"), "parameters": result["parameters"],
        "epochs": result["epochs_completed"], "steps": result["steps"], "minutes": result["wall_seconds"] / 60,
        "train_minutes": result.get("train_seconds", result["wall_seconds"]) / 60,
        "processes": result.get("world_size", 1), "threads": config.get("threads") or None,
        "batch_size": config.get("batch_size"), "images_seen": result.get("images_seen"),
        "top1": final.get("top1"), "top5": final.get("top5"), "best_top1": result["best"]["top1"],
        "train_images_per_s": train.get("images_per_s"), "seconds_per_1k_steps": train.get("seconds_per_1k_steps"),
        "peak_memory_gb": train.get("peak_memory_gb"), "status": result["status"], "config": config,
    }
    if result.get("cpu_seconds") and result.get("wall_seconds"):
        # CPU seconds of the first process per second of its wall time: its share of the cores it could use
        row["core_share"] = result["cpu_seconds"] / result["wall_seconds"] / (row["threads"] or 1)
    if row["images_seen"] and result.get("train_seconds"):
        row["run_images_per_s"] = row["images_seen"] / result["train_seconds"]  # all processes, evaluations included
    return row


def _cell(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def runs_table(rows: list[dict[str, Any]], labels: list[str]) -> str:
    """The measured runs as a Markdown table: test accuracy, training time, throughput (training images per second
    of training time over all processes, evaluations between epochs included), time per 1K updates and peak memory
    (of one process) in the last epoch. The core share is the first process's CPU seconds per wall second and
    thread: below 1 when other work on the machine took part of its cores."""
    header = ("| model | blocks | parameters | processes x threads | core share | training min | epochs | updates | "
              "test top-1 | test top-5 | img/s (all processes) | s / 1K steps | peak memory GB |")
    lines = [header, "|" + "---|" * header.count(" | ") + "---|"]
    for label, row in zip(labels, rows):
        primal = len(row["primal_blocks"])
        blocks = f"{row['depth'] - primal} softmax + {primal} primal" if row["depth"] else f"{primal} primal"
        layout = f"{row['processes']} x {row['threads'] or 'default'}"
        epochs = row["epochs"]
        if row["images_seen"] and row["config"].get("dataset") == "fashion_mnist":
            epochs = row["images_seen"] / 60000
        cells = [label, blocks, _cell(row["parameters"], "{:,}"), layout, _cell(row.get("core_share"), "{:.2f}"),
                 _cell(row["train_minutes"], "{:.1f}"),
                 _cell(epochs, "{:.1f}"), _cell(row["steps"], "{:,}"), _cell(row["top1"], "**{:.2f}**"),
                 _cell(row["top5"], "{:.2f}"),
                 _cell(row.get("run_images_per_s", row["train_images_per_s"]), "{:.0f}"),
                 _cell(row["seconds_per_1k_steps"], "{:.0f}"), _cell(row["peak_memory_gb"], "{:.2f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_table() -> str:
    """Table 7a of the paper as Markdown."""
    lines = ["| model | IN-100 top-1 | IN-1K top-1 | s / 1K steps | memory GB |", "|---|---|---|---|---|"]
    for row in PAPER_TABLE_7A:
        lines.append(f"| {row['model']} | {row['in100']} | {row['in1k']} | {row['seconds_per_1k_steps']} | "
                     f"{row['memory_gb']} |")
    return "\n".join(lines)


def recipe_text(config: dict[str, Any]) -> str:
    """One paragraph naming the settings that define a run's model and recipe."""
    augment = []
    if config.get("auto_augment") not in (None, "", "none"):
        augment.append(f"RandAugment {config['auto_augment']}")
    if config.get("train_crop") == "pad":
        augment.append("random crop of the padded image")
    if config.get("hflip"):
        augment.append(f"horizontal flip {config['hflip']}")
    if config.get("color_jitter") and config.get("auto_augment") in (None, "", "none"):
        augment.append(f"colour jitter {config['color_jitter']}")
    if config.get("reprob"):
        augment.append(f"random erasing {config['reprob']}")
    if config.get("mixup") or config.get("cutmix"):
        augment.append(f"Mixup {config.get('mixup')} / CutMix {config.get('cutmix')}")
    if config.get("model_ema"):
        augment.append("model EMA")
    schedule = "advanced with elapsed time" if config.get("time_schedule") else "advanced per update"
    return (
        f"Model: patch {config.get('patch_size')}, width {config.get('embed_dim')}, {config.get('depth')} blocks, "
        f"{config.get('num_heads')} heads, MLP ratio {config.get('mlp_ratio')}; primal block s = "
        f"{config.get('low_rank')}, eta = {config.get('eta')}. Recipe: {config.get('opt')} lr "
        f"{config.get('lr')} (batch {config.get('batch_size')} per process), weight decay "
        f"{config.get('weight_decay')}, cosine schedule {schedule} with warm-up {config.get('warmup_epochs')} of "
        f"{config.get('epochs')} nominal epochs, label smoothing {config.get('smoothing')}, drop path "
        f"{config.get('drop_path')}; augmentation: {', '.join(augment) or 'none'}; evaluation every "
        f"{config.get('eval_every')} epoch(s) and at the end."
    )


def write_report(
    runs: list[str | Path],
    labels: list[str],
    output: str | Path,
    *,
    title: str,
    spectrum: str | Path | None = None,
    target: float | None = None,
    note: str = "",
    command: str = "",
) -> Path:
    """Write the Markdown report of ``runs`` to ``output``; the last run is the one the ``target`` applies to.

    Args:
        runs: run folders of ``python -m vision train`` (baseline first, Primal.+DeiT last).
        labels: a display name per run.
        output: the Markdown file; a spectrum plot is copied beside it as ``<stem>_spectrum.png``.
        title: the page's heading.
        spectrum: stem (or ``.json``) of a ``python -m vision spectrum`` output, optional.
        target: test top-1 (%) the last run must reach; the page says whether it did.
        note: free text placed under the heading (how the runs shared the machine, ...).
        command: the command that produced the runs.
    """
    if len(labels) != len(runs):
        raise ValueError(f"got {len(labels)} labels for {len(runs)} runs; give one --label per run")
    rows = [run_summary(run) for run in runs]
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    parts = [f"# {title}", "", f"Written by `python -m vision report` on {time.strftime('%Y-%m-%d %H:%M')}."]
    if command:
        parts.append(f"Command: `{command}`.")
    if note:
        parts += ["", note]
    parts += ["", runs_table(rows, labels), ""]
    if target is not None and rows[-1]["top1"] is not None:
        reached = rows[-1]["top1"] >= target
        verdict = "reached" if reached else "**not reached**"
        parts.append(f"Target: {labels[-1]} >= {target:g}% test top-1: {verdict} ({rows[-1]['top1']:.2f}%).")
        parts.append("")
    parts += [recipe_text(rows[-1]["config"]), "", "Test top-1 is the model at the end of training (no choice of "
              "the best epoch on the test split); one seed per model.", ""]
    if spectrum is not None:
        stem = Path(spectrum).with_suffix("")
        data = json.loads(stem.with_suffix(".json").read_text())
        plot = output.with_name(f"{output.stem}_spectrum.png")
        shutil.copyfile(stem.with_suffix(".png"), plot)
        parts += ["## Attention spectrum", "", f"![cumulative singular values]({plot.name})", "",
                  f"Share of the largest singular value in the sum (the curves' first point; mean over "
                  f"{data['num_images']} test images and the heads; 1.0 means rank one):", "",
                  "| model, block | largest / sum |", "|---|---|"]
        parts += [f"| {name} | {value:.3f} |" for name, value in data["first_index"].items()]
        parts.append("")
    parts += ["## The paper, for context (Table 7a)", "",
              "DeiT-Small/16 (22M parameters, 197 tokens) trained 300 epochs on ImageNet with 2 A100 GPUs; not "
              "comparable with the numbers above beyond the direction of the difference.", "", paper_table(), ""]
    output.write_text("\n".join(parts))
    return output
