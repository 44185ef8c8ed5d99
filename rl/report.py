"""The results page of ``python -m rl benchmark``: Decision Transformer variants (Chen et al., 2021) trained for the
same time on one data set, with Primal.+DT's D4RL scores from the paper (Chen et al., NeurIPS 2023, Table 4) for
context.

``python -m rl benchmark`` writes the page at the end of a run (``docs/results/rl.md`` unless told otherwise);
``python -m rl report RUN_DIR`` renders it again from the run's ``benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

DEFAULT_REPORT = Path("docs/results/rl.md")

# Table 4: D4RL normalised score, mean ± "variance" (as captioned) over 3 seeds, gym v3 MuJoCo, 100k updates.
PAPER_TABLE_4 = (
    ("Medium-Expert", "HalfCheetah", "83.8 ± 3.3", "77.8 ± 22.1"),
    ("Medium-Expert", "Hopper", "104.0 ± 2.5", "111.5 ± 0.2"),
    ("Medium-Expert", "Walker", "107.7 ± 0.6", "108.9 ± 0.1"),
    ("Medium", "HalfCheetah", "42.4 ± 0.1", "43.0 ± 0.0"),
    ("Medium", "Hopper", "64.2 ± 1.1", "74.5 ± 0.6"),
    ("Medium", "Walker", "70.6 ± 3.2", "77.9 ± 7.8"),
    ("Medium-Replay", "HalfCheetah", "34.6 ± 0.6", "38.9 ± 0.4"),
    ("Medium-Replay", "Hopper", "79.7 ± 7.4", "88.5 ± 12.5"),
    ("Medium-Replay", "Walker", "62.9 ± 5.0", "76.8 ± 10.3"),
    ("Average", "", "72.2 ± 2.6", "77.5 ± 6.0"),
)
LABELS = {"primal+dt": "Primal.+DT (`primal+dt`)", "dt": "DT (`dt`, softmax)"}


def _label(model: str) -> str:
    return LABELS.get(model, f"`{model}`")


def _blocks(schedule: list[str] | None) -> str:
    if not schedule:
        return "-"
    counts: dict[str, int] = {}
    for name in schedule:
        counts[name] = counts.get(name, 0) + 1
    return " + ".join(f"{n} {name}" for name, n in counts.items())


def _evaluation_cell(evaluation: dict[str, Any] | None, best: bool) -> str:
    if evaluation is None:
        return "-"
    text = f"{evaluation['return_mean']:.1f} ± {evaluation['return_std']:.1f} ({evaluation['normalized_mean']:.1f})"
    return f"**{text}**" if best else text


def results_table(summary: dict[str, Any]) -> list[str]:
    """One row per model: updates, training time, return ± std (normalised score) at each target, best score."""
    models = summary["models"]
    targets = sorted({e["target"] for row in models.values() for e in row.get("evaluations", [])}, reverse=True)
    mean = summary["dataset_return_mean"]
    header = ["model", "blocks", "s", "updates", "training min", *(f"target {t:g}" for t in targets),
              "best normalised", f"best > data-set mean ({mean:.1f})"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, row in models.items():
        by_target = {e["target"]: e for e in row.get("evaluations", [])}
        cells = [_label(model), _blocks(row.get("schedule")), str(row.get("low_rank", "-")), f"{row['steps']:,}",
                 f"{row['train_minutes']:.1f}",
                 *(_evaluation_cell(by_target.get(t), t == row["target"]) for t in targets),
                 f"{row['normalized']:.1f}", "yes" if row["beats_dataset_mean"] else "no"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _machine_sentence(summary: dict[str, Any]) -> str:
    machine = summary.get("machine")
    if not machine:
        return "The run did not record its machine."
    threads = f"{machine['torch_threads']} torch thread(s)"
    if machine.get("omp_num_threads"):
        threads += f" (OMP_NUM_THREADS={machine['omp_num_threads']})"
    text = (f"The models trained one after another in one process with {threads} on {machine['cpu']} "
            f"({machine['logical_cpus']} logical CPUs), torch {machine['torch']}, Python {machine['python']}")
    before, after = summary.get("load_average_before"), summary.get("load_average_after")
    if before and after:
        text += f"; load average {before[0]:.1f} before and {after[0]:.1f} after the run (1 min)"
    return text + "."


def _dataset_paragraph(summary: dict[str, Any]) -> list[str]:
    stats = summary.get("dataset_statistics") or {}
    text = f"Data set `{summary['dataset']}`"
    if stats:
        text += (f": {stats['episodes']} episodes, {stats['transitions']:,} transitions, episode returns from "
                 f"{stats['return_min']:.0f} to {stats['return_max']:.0f}")
    text += f", mean episode return **{summary['dataset_return_mean']:.1f}**."
    behaviours = summary.get("dataset_behaviours")
    if behaviours:
        parts = ", ".join(f"{name} {b['episodes']} episodes (mean {b['return_mean']:.0f})"
                          for name, b in behaviours.items())
        text += f" Behaviour policies: {parts}."
    return [text]


def _settings_sentence(summary: dict[str, Any]) -> str | None:
    settings = summary.get("settings") or {}
    keys = (("context_length", "K"), ("embed_dim", "embed"), ("num_layers", "layers"), ("num_heads", "heads"),
            ("batch_size", "batch"), ("learning_rate", "lr"), ("warmup_steps", "warm-up steps"), ("eta", "eta"),
            ("final_eval_episodes", "evaluation episodes per target"), ("seed", "seed"))
    parts = [f"{label} {settings[key]:g}" if isinstance(settings[key], float) else f"{label} {settings[key]}"
             for key, label in keys if settings.get(key) is not None]
    return f"Settings shared by the models: {', '.join(parts)}." if parts else None


def _verdict(summary: dict[str, Any]) -> str | None:
    primal = summary["models"].get("primal+dt")
    if primal is None:
        return None
    mean = summary["dataset_return_mean"]
    reached = "reached" if primal["beats_dataset_mean"] else "missed"
    return (f"Target: Primal.+DT's mean evaluation return above the data set's mean episode return ({mean:.1f}): "
            f"**{reached}** ({primal['return_mean']:.1f} at target {primal['target']:g}, "
            f"{primal['return_mean'] / mean:.1f} times the data-set mean).")


def render_report(summary: dict[str, Any]) -> str:
    """Markdown for a benchmark summary (the dict written to ``benchmark.json``)."""
    minutes = summary["minutes"]
    duration = f"{minutes:g} minute" + ("" if minutes == 1 else "s")
    lines = [f"# RL: Decision Transformers trained for {duration} each on one offline data set", "",
             "Written by `python -m rl benchmark`"
             + (f" on {summary['finished']}" if summary.get("finished") else "")
             + f"; `python -m rl report {summary.get('run_dir', 'RUN_DIR')}` renders it again from the run's "
             "`benchmark.json`.", ""]
    if summary.get("command"):
        lines += [f"Command: `{summary['command']}`.", ""]
    lines += [(f"Run started {summary['started']}. " if summary.get("started") else "")
              + f"Each model trained for {duration} of wall-clock time (evaluation excluded), then was "
              "evaluated by return-conditioned rollouts at each target. " + _machine_sentence(summary), ""]
    lines += _dataset_paragraph(summary) + [""]
    lines += ["Mean episode return ± std over the evaluation episodes, with the D4RL normalised score in brackets "
              "(100 (R - R_random) / (R_expert - R_random), D4RL v2 references); in bold the target each model "
              "scored best at.", ""]
    lines += results_table(summary) + [""]
    for sentence in (_verdict(summary), _settings_sentence(summary)):
        if sentence:
            lines += [sentence, ""]
    lines += ["The best target is chosen on the same episodes it is reported on, and each model ran with one seed, "
              "so a difference between the models smaller than their std does not rank them.", "",
              "## The paper, for context (Table 4)", "",
              "D4RL normalised scores on the real D4RL v2 data sets (gym v3 MuJoCo), the full-size model (embed 256, "
              "3 layers, 4 heads) trained for 100k updates on GPUs, mean ± variance over 3 seeds. The data set, "
              "simulator version, model size and training budget above all differ, so the scores are not "
              "comparable in absolute terms; only the direction of the difference between DT and Primal.+DT is.",
              "", "| data set | environment | DT | Primal.+DT |", "|---|---|---|---|"]
    lines += [f"| {data} | {env} | {dt} | {primal} |" for data, env, dt, primal in PAPER_TABLE_4]
    return "\n".join(lines) + "\n"


def write_report(summary: dict[str, Any], path: str | os.PathLike) -> Path:
    """Render ``summary`` and write it to ``path`` (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(summary))
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run folder of `python -m rl benchmark` (holds benchmark.json)")
    parser.add_argument("--out", type=Path, default=DEFAULT_REPORT, help=f"page to write (default {DEFAULT_REPORT})")


def main(args: argparse.Namespace) -> Path:
    source = args.run_dir / "benchmark.json" if args.run_dir.is_dir() else args.run_dir
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: give the --run-dir of a finished `python -m rl benchmark`")
    path = write_report(json.loads(source.read_text()), args.out)
    print(f"wrote {path}")
    return path
