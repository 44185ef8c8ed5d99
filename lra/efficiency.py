"""The efficiency protocol of Primal-Attention's Table 3 (Chen et al., NeurIPS 2023): wall time and peak memory
of the first K training steps of the LRA model, per task and mechanism.

``python -m lra efficiency`` measures one (task, attention) in this process on random batches of the task's
shape (so no data is needed); ``python -m lra table`` runs it in a fresh process per configuration, so memory
counters never mix, and prints the table with factors relative to the Transformer. The paper's figure also
counts the dev evaluations that fall inside the first 1,000 steps; here only training steps are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from core.engine import seed_everything, select_device, write_json
from core.engine.memory import PeakMemory, synchronize
from lra.config import TASKS, load_config, model_sequence_length
from lra.model import build_model
from lra.plots import plot_efficiency
from lra.trainer import Trainer

BASELINES = ("softmax", "transformer")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "efficiency",
        help="time and peak memory of the first K training steps (one configuration)",
        description="Time K training steps of the LRA model (forward, KSVD, backward, optimiser) on random batches "
        "of the task's shape and report wall time and peak memory as JSON.",
    )
    parser.add_argument("--task", required=True, choices=TASKS, help="task whose shape (length, batch, vocab) is used")
    parser.add_argument("--attention", required=True, help="registry name, or primalformer / primal+trans / transformer")
    parser.add_argument("--steps", type=int, default=1000, help="training steps to time (the paper: first 1000)")
    parser.add_argument("--warmup-steps", type=int, default=2, help="untimed steps before timing starts")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size (default: the task config's)")
    parser.add_argument(
        "--seq-len", type=int, default=None, help="sequence length (default: the task's, rounded to a power of two)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON result here (it is always printed)")
    parser.set_defaults(run=run_one)


def add_table_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "table",
        help="run the efficiency protocol over tasks x mechanisms and print a Table-3-like table",
        description="Measure every (task, attention) in a fresh process and print time and peak memory with "
        "factors relative to the Transformer (softmax), like Table 3 of Primal-Attention.",
    )
    parser.add_argument(
        "--tasks",
        nargs="+",
        default=["listops", "text", "retrieval", "image", "pathfinder"],
        choices=TASKS,
        help="tasks (columns)",
    )
    parser.add_argument(
        "--attentions",
        nargs="+",
        default=["softmax", "primal+trans", "primalformer"],
        help="mechanisms (rows); the first of softmax/transformer is the baseline of the factors",
    )
    parser.add_argument("--steps", type=int, default=1000, help="training steps per measurement")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size for every task (default: each config's)")
    parser.add_argument("--seq-len", type=int, default=None, help="sequence length for every task (default: each task's)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per measurement")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before one measurement is abandoned")
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("runs/lra/efficiency"),
        help="folder for efficiency.json, table.md and efficiency.png",
    )
    parser.add_argument(
        "--collect-only",
        action="store_true",
        help="do not measure; read <out-dir>/<task>-<attention>.json written earlier (e.g. by a SLURM array)",
    )
    parser.set_defaults(run=run_table)


def random_batch(config: dict, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """A batch of the task's shape with every token real."""
    mask = torch.ones(batch_size, seq_len, dtype=torch.bool)
    kind = config["kind"]
    if kind == "adding":
        inputs = torch.stack([torch.rand(batch_size, seq_len) * 2 - 1, torch.zeros(batch_size, seq_len)], dim=-1)
        inputs[:, :2, 1] = 1.0
        return {"inputs": inputs, "mask": mask, "labels": torch.rand(batch_size)}
    high = min(config["vocab_size"], 257 if kind == "pixels" else config["vocab_size"])
    batch = {
        "input_ids": torch.randint(1, high, (batch_size, seq_len)),
        "mask": mask,
        "labels": torch.randint(0, config["num_classes"], (batch_size,)),
    }
    if kind == "pair":
        batch.update(input_ids_1=torch.randint(1, high, (batch_size, seq_len)), mask_1=mask.clone())
    return batch


def measure(
    task: str,
    attention: str,
    steps: int,
    batch_size: int | None = None,
    seq_len: int | None = None,
    device: str = "auto",
    warmup_steps: int = 2,
) -> dict:
    """Time ``steps`` training steps and measure peak memory; returns a JSON-able dict."""
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    seed_everything(0)
    config = load_config(task)
    batch_size = batch_size or config["train"]["batch_size"]
    seq_len = seq_len or model_sequence_length(config["max_length"])
    target = select_device(device)
    model, eta, schedule = build_model(config, attention, seq_len)
    train_cfg = {**config["train"], "steps": steps + warmup_steps}
    trainer = Trainer(model, eta, config["kind"] == "adding", train_cfg, target)
    batch = random_batch(config, batch_size, seq_len)
    meter = PeakMemory(target)
    meter.start()  # before the warm-up steps: on CPU the allocator keeps their memory, so they hold the peak
    for _ in range(warmup_steps):
        trainer.train_step(batch)
    synchronize(target)
    start = time.perf_counter()
    for _ in tqdm(range(steps), desc=f"{task}/{attention}", leave=False):
        trainer.train_step(batch)
    synchronize(target)
    seconds = time.perf_counter() - start
    return {
        "task": task,
        "attention": attention,
        "layers": schedule,
        "steps": steps,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "seconds": round(seconds, 3),
        "seconds_per_step": round(seconds / steps, 4),
        "peak_memory_mb": round(meter.peak_bytes() / 2**20, 1),
        "memory_method": meter.method,
        "device": str(target),
        "threads": torch.get_num_threads(),
        "ok": True,
    }


def run_one(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    result = measure(args.task, args.attention, args.steps, args.batch_size, args.seq_len, args.device, args.warmup_steps)
    if args.out is not None:
        write_json(result, args.out)
    print(json.dumps(result))
    return result


def _factor(value: float, base: float | None, higher_is_worse: bool = True) -> str:
    if not base or not value:
        return ""
    return f" ({base / value:.1f}x)" if higher_is_worse else f" ({value / base:.1f}x)"


def format_table(records: list[dict], tasks: list[str], attentions: list[str]) -> str:
    """Markdown tables of time and memory; factors are speed-up / memory saving relative to the baseline row."""
    found = {(r["task"], r["attention"]): r for r in records}
    baseline = next((a for a in attentions if a in BASELINES), None)
    lines = []
    for key, title, unit in (("seconds", "Time", "s"), ("peak_memory_mb", "Peak memory", "MB")):
        lines += [
            f"{title} ({unit}; factor vs {baseline or 'no baseline'})",
            "",
            "| model | " + " | ".join(tasks) + " |",
            "|---" * (len(tasks) + 1) + "|",
        ]
        for attention in attentions:
            cells = []
            for task in tasks:
                record = found.get((task, attention))
                if record is None or not record.get("ok"):
                    cells.append("failed" if record else "-")
                    continue
                base = found.get((task, baseline), {}) if baseline else {}
                base_value = base.get(key) if base.get("ok") else None
                cells.append(f"{record[key]:.1f}{_factor(record[key], base_value) if attention != baseline else ''}")
            lines.append(f"| {attention} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _child_environment() -> dict[str, str]:
    """This environment with the folder holding ``lra`` on PYTHONPATH, so the child finds the package."""
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}


def run_table(args: argparse.Namespace) -> list[dict]:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    records = []
    jobs = [(t, a) for t in args.tasks for a in args.attentions]
    for task, attention in tqdm(jobs, desc="efficiency"):
        out = args.out_dir / f"{task}-{attention}.json"
        if args.collect_only:
            if out.is_file():
                records.append(json.loads(out.read_text()))
            else:
                records.append({"task": task, "attention": attention, "ok": False, "error": f"{out} not found"})
            continue
        command = [
            sys.executable,
            "-m",
            "lra",
            "efficiency",
            "--task",
            task,
            "--attention",
            attention,
            "--steps",
            str(args.steps),
            "--device",
            args.device,
            "--out",
            str(out),
        ]
        for flag, value in (("--batch-size", args.batch_size), ("--seq-len", args.seq_len), ("--threads", args.threads)):
            if value is not None:
                command += [flag, str(value)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env=_child_environment())
            if done.returncode == 0 and out.is_file():
                records.append(json.loads(out.read_text()))
                continue
            error = (done.stderr.strip().splitlines() or ["unknown error"])[-1]
        except subprocess.TimeoutExpired:
            error = f"timed out after {args.timeout} s"
        tqdm.write(f"{task}/{attention} failed: {error}")
        records.append({"task": task, "attention": attention, "ok": False, "error": error})
    table = format_table(records, args.tasks, args.attentions)
    write_json({"records": records}, args.out_dir / "efficiency.json")
    (args.out_dir / "table.md").write_text(table)
    if any(r.get("ok") for r in records):
        plot_efficiency(records, args.out_dir / "efficiency.png")
    print(table)
    print(f"results in {args.out_dir}/efficiency.json, table.md, efficiency.png")
    return records
