"""The page ``docs/results/lra.md`` that ``python -m lra benchmark`` writes: one section per target, built from
the records kept in ``docs/results/lra.json`` (so each command rewrites the page without losing the other's).

Beside our numbers: the baselines (majority-class rate, trivial predictor) and, for ListOps, the published LRA
accuracies (Primal-Attention, Chen et al., NeurIPS 2023, Table 2; LRA, Tay et al., ICLR 2021).
"""

from __future__ import annotations

import json
from pathlib import Path

from core.engine import write_json

# Published ListOps test accuracy (%), full-length (2K tokens) LRA trained to convergence on accelerators.
PUBLISHED_LISTOPS = (
    ("PrimalFormer", 37.3, "Primal-Attention (Chen et al., 2023), Table 2"),
    ("Primal.+Trans.", 37.3, "Primal-Attention, Table 2"),
    ("Transformer (PyTorch LRA code)", 37.1, "Primal-Attention, Table 2"),
    ("Performer", 18.8, "Primal-Attention, Table 2"),
    ("Transformer (JAX)", 36.37, "LRA (Tay et al., 2021)"),
    ("Linear Trans. (JAX)", 16.13, "LRA (Tay et al., 2021)"),
)


def update_results(path: Path, key: str, record: dict) -> None:
    """Store ``record`` under ``key`` in the JSON beside ``path`` and rewrite the markdown from all records."""
    store_path = path.with_suffix(".json")
    store = json.loads(store_path.read_text()) if store_path.is_file() else {}
    store[key] = record
    write_json(store, store_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(store))
    print(f"results in {path} and {store_path}")


def render(store: dict) -> str:
    lines = [
        "# LRA suite: CPU benchmark results",
        "",
        "Written by `python -m lra benchmark listops` and `python -m lra benchmark adding` (see `docs/lra.md`); re-run",
        "the commands rather than editing this file. The raw numbers are in `lra.json` beside it.",
        "",
    ]
    if "listops" in store:
        lines += _render_listops(store["listops"])
    if "adding" in store:
        lines += _render_adding(store["adding"])
    return "\n".join(lines) + "\n"


def _load(record: dict) -> str:
    before, after = record["machine_before"]["load_average"][0], record["machine_after"]["load_average"][0]
    return f"{record['machine_before']['cpus']} CPUs, 1-minute load average {before} before and {after} after"


def _model(model: dict) -> str:
    return f"{model['num_layers']} layers, width {model['dim']}, FFN {model['ffn_dim']}, dropout {model['dropout']}"


def _render_listops(record: dict) -> list[str]:
    run, data = record["run"], record["data"]
    test, majority = run["test"]["accuracy"], run["majority_accuracy"]
    train, dev, test_size = data["sizes"]
    lines = [
        f"## ListOps, generated, {data['min_length']} < length < {data['max_length']} tokens",
        "",
        f"`{record['command']}` on {record['date']} ({_load(record)}).",
        f"Data: {train} / {dev} / {test_size} expressions of the LRA grammar; model: {_model(run['model'])}, layers "
        f"{', '.join(run['layers'])}.",
        "",
        "| model | steps (planned) | training time | test accuracy | majority-class rate | difference |",
        "|---|---|---|---|---|---|",
        f"| {run['attention']} | {run['steps_done']} ({run['steps_planned']}) | {run['train_seconds'] / 60:.1f} min | "
        f"{100 * test:.1f} % | {100 * majority:.1f} % | {100 * (test - majority):+.1f} points |",
        "",
        "For context, published ListOps test accuracies on the full task (up to 2,000 tokens, trained to convergence "
        "on accelerators; not comparable in length or budget):",
        "",
        "| model | ListOps accuracy | source |",
        "|---|---|---|",
        *[f"| {model} | {value} % | {source} |" for model, value, source in PUBLISHED_LISTOPS],
        "",
    ]
    return lines


def _render_adding(record: dict) -> list[str]:
    data, runs = record["data"], record["runs"]
    beaten = sum(run["test"]["mse"] < run["trivial_mse"] for run in runs)
    stages = data.get("curriculum") or []
    curriculum = (
        f"Each mechanism trains on N = {', '.join(map(str, stages))} in turn (one model without position "
        f"embeddings; a stage ends when its dev MSE reaches the stop value or its time is up), then on "
        f"N = {data['length']}, where the best dev checkpoint is tested."
        if stages
        else f"Each mechanism trains on N = {data['length']} only."
    )
    lines = [
        f"## Adding (PSF), N = {data['length']}, every linear-complexity mechanism",
        "",
        f"`{record['command']}` on {record['date']} ({_load(record)}); {record['wall_minutes']} minutes for all "
        f"{len(runs)} mechanisms. Data: {' / '.join(map(str, data['sizes']))} sequences per length; model: "
        f"{_model(runs[0]['model'])}. {curriculum} The trivial predictor answers the training mean; accuracy "
        "counts |error| < 0.04 (PSF's rule).",
        "",
        f"**{beaten} of {len(runs)}** mechanisms reach a test MSE below the trivial predictor's.",
        "",
        f"| mechanism | complexity | curriculum steps (N: steps) | steps at N = {data['length']} | training s | "
        "test MSE | trivial MSE | MSE / trivial | test accuracy | trivial accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        mse, trivial = run["test"]["mse"], run["trivial_mse"]
        warm = run.get("curriculum", [])
        steps = ", ".join(f"{stage['length']}: {stage['steps_done']}" for stage in warm) or "-"
        seconds = run["train_seconds"] + sum(stage["train_seconds"] for stage in warm)
        lines.append(
            f"| `{run['attention']}` | {run['complexity']} | {steps} | {run['steps_done']} | {seconds:.0f} | "
            f"{mse:.4f} | {trivial:.4f} | {mse / trivial:.3f} | {100 * run['test']['accuracy']:.1f} % | "
            f"{100 * run['trivial_accuracy']:.1f} % |"
        )
    lines += [
        "",
        "For context: PSF-Attn trains Adding for 20 epochs of 200,000 sequences (100,000 steps of batch 40, "
        "Khalitov et al., 2022); these runs get about a minute each on a shared CPU, so the bar is the trivial "
        "predictor, not PSF's accuracy.",
        "",
    ]
    return lines
