"""``python -m lra benchmark {listops,adding}``: the suite's two CPU targets, each one command end to end.

- ``listops``: generated ListOps with sequences of at most 512 tokens, a 2-layer PrimalFormer trained for a wall
  time budget (10 minutes); test accuracy next to the majority-class rate.
- ``adding``: PSF's Adding problem (Khalitov et al., 2022) at N = 1024 for every registered mechanism whose cost
  grows linearly in N (read from the registry's ``complexity`` field); test MSE next to the trivial predictor's
  (the training mean). Each mechanism first trains on N = 128 (a length curriculum: the marked pair is 8 times
  denser, so the model finds it within a few hundred steps instead of thousands), then continues on N = 1024,
  where it is selected on dev and tested. The model has no position embeddings (as PSF's Adding model), so one
  set of weights serves both lengths.

Both generate their data when it is missing, train through ``python -m lra train`` (same code path, resumable
run folders), record the results in ``docs/results/lra.json`` and rewrite ``docs/results/lra.md``, which puts
our numbers beside the baselines and the published LRA ListOps accuracies for context (:mod:`lra.results_page`).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import time
from pathlib import Path

import torch

import core
from core.engine.machine import load_average
from lra.results_page import update_results

RESULTS = Path("docs/results/lra.md")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "benchmark",
        help="the CPU targets: ListOps <= 512 tokens with PrimalFormer, Adding at N = 1024 for every linear mechanism",
        description="Generate data if missing, train, and write the results table to docs/results/lra.md "
        "(with docs/results/lra.json beside it).",
    )
    targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    listops = targets.add_parser(
        "listops",
        help="2-layer PrimalFormer on generated ListOps (<= 512 tokens) for a wall-time budget",
        description="Train the LRA model with PrimalFormer layers on generated ListOps and compare the test "
        "accuracy with the majority-class rate.",
    )
    listops.add_argument("--minutes", type=float, default=10.0, help="training wall time (evaluation on test is extra)")
    listops.add_argument("--attention", default="primalformer", help="attention of every layer (registry name or model)")
    listops.add_argument("--min-length", type=int, default=100, help="generated expressions are longer than this")
    listops.add_argument("--max-length", type=int, default=512, help="generated expressions are shorter than this")
    add_common(listops, sizes=(20_000, 1_000, 1_000), steps=1_200, lr=2e-3, batch_size=32, warmup=100, eval_every=100,
               eval_batches=16)  # fmt: skip
    listops.set_defaults(run=run_listops)

    adding = targets.add_parser(
        "adding",
        help="Adding at N = 1024 for every linear-complexity mechanism of the registry",
        description="Train the LRA model on PSF's Adding problem once per mechanism whose registered complexity "
        "is linear in N, and compare each test MSE with the trivial predictor's.",
    )
    adding.add_argument("--length", type=int, default=1024, help="sequence length N (a power of two, 128..16384)")
    adding.add_argument(
        "--attentions", nargs="+", default=None, help="mechanisms to run (default: every linear one in the registry)"
    )
    adding.add_argument(
        "--total-minutes", type=float, default=15.0, help="wall time shared by all mechanisms (training and testing)"
    )
    adding.add_argument(
        "--curriculum",
        type=int,
        nargs="*",
        default=[32, 128],
        help="shorter lengths trained first, in order (powers of two from 16; none = train on --length only)",
    )
    adding.add_argument(
        "--short-share",
        type=float,
        default=0.7,
        help="largest share of a mechanism's training time spent on the curriculum (the rest, and whatever the "
        "curriculum leaves, goes to --length)",
    )
    adding.add_argument(
        "--stop-mse",
        type=float,
        default=0.002,
        help="a phase stops once its dev MSE is at most this (about 5 %% of the trivial predictor's); the time it "
        "saves goes to the mechanisms after it",
    )
    adding.add_argument("--short-steps", type=int, default=1_500, help="planned steps of each curriculum stage")
    adding.add_argument("--short-lr", type=float, default=3e-3, help="peak learning rate of the curriculum stages")
    add_common(adding, sizes=(20_000, 500, 500), steps=400, lr=1e-3, batch_size=16, warmup=20, eval_every=25,
               eval_batches=8, where=" at --length (per length for the data)")  # fmt: skip
    adding.set_defaults(run=run_adding)


def add_common(
    parser: argparse.ArgumentParser,
    sizes: tuple[int, int, int],
    steps: int,
    lr: float,
    batch_size: int,
    warmup: int,
    eval_every: int,
    eval_batches: int,
    where: str = "",
) -> None:
    """The flags both targets share, with each target's defaults; ``where`` qualifies the schedule's flags."""
    for name, size in zip(("train", "dev", "test"), sizes):
        parser.add_argument(f"--{name}", type=int, default=size, help=f"generated {name} examples")
    parser.add_argument(
        "--steps", type=int, default=steps, help=f"planned steps of the one-cycle schedule{where} (time may stop it)"
    )
    parser.add_argument("--lr", type=float, default=lr, help=f"peak learning rate{where}")
    parser.add_argument("--batch-size", type=int, default=batch_size, help="training batch size")
    parser.add_argument("--warmup", type=int, default=warmup, help="warm-up steps of each schedule")
    parser.add_argument("--eval-every", type=int, default=eval_every, help="dev evaluation every this many steps")
    parser.add_argument("--eval-batches", type=int, default=eval_batches, help="dev batches per evaluation (0 = all)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the data and of the training runs")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 avoids spinning on a busy machine)")
    parser.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="model dropout (LRA: 0.1; default 0: on CPU it costs a quarter of each step, and minutes leave no "
        "time to overfit)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="config override passed to every training run, e.g. --set model.dim=32 (repeatable)",
    )
    parser.add_argument("--data-root", type=Path, default=Path("data/lra/bench"), help="where generated data goes")
    parser.add_argument("--runs-root", type=Path, default=Path("runs/lra/bench"), help="where run folders go")
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown results file (JSON written beside it)")
    parser.add_argument("--fresh", action="store_true", help="start the runs over instead of resuming their folders")


def grows_linearly(complexity: str) -> bool:
    """Whether a registry complexity such as ``"O(N m d + m^3)"`` is linear in N (no N^2, no log N).

    Raises:
        ValueError: the text is not of the form ``O(...)``.
    """
    match = re.fullmatch(r"\s*O\((.*)\)\s*", complexity)
    if match is None:
        raise ValueError(f"expected a complexity like 'O(N s d)', got {complexity!r}")
    body = match.group(1)
    if re.search(r"\blog", body):
        return False
    powers = [int(p) if p else 1 for p in re.findall(r"\bN(?:\^(\d+))?", body)]
    return bool(powers) and max(powers) == 1


def linear_mechanisms() -> list[str]:
    """Registry names whose cost grows linearly with the sequence length."""
    return [name for name in core.list_attentions() if grows_linearly(core.attention_info(name).complexity)]


def train_once(argv: list[str]) -> dict:
    """Run ``python -m lra train`` with ``argv`` in this process; returns its result."""
    from lra.__main__ import build_parser

    args = build_parser().parse_args(["train", *argv])
    return args.run(args)


def common_train_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--seed", str(args.seed), "--threads", str(args.threads), "--set", f"model.dropout={args.dropout}"]
    for assignment in args.set:
        flags += ["--set", assignment]
    return flags + (["--no-resume"] if args.fresh else [])


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "load_average": load_average() or [float("nan")] * 3,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def run_listops(args: argparse.Namespace) -> dict:
    from lra.generate import generate_listops
    from lra.prepare import prepare

    name = f"listops-{args.min_length}-{args.max_length}-seed{args.seed}"
    data = args.data_root / name
    if not (data / "test" / "meta.json").is_file():
        raw = args.data_root / "raw" / name
        sizes = (args.train, args.dev, args.test)
        print(f"generating {sum(sizes)} ListOps expressions of {args.min_length}..{args.max_length} tokens into {raw}")
        generate_listops(raw, sizes, args.seed, args.min_length, args.max_length)
        prepare("listops", raw, data, max_length=args.max_length - 1, seed=args.seed)
    run_dir = args.runs_root / f"{name}-{args.attention}"
    before = machine()
    result = train_once(
        [
            "--task", "listops", "--attention", args.attention, "--data", str(data), "--run-dir", str(run_dir),
            "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--set", f"train.warmup={args.warmup}", "--eval-every", str(args.eval_every),
            "--eval-batches", str(args.eval_batches), "--trim-padding", "--max-minutes", str(args.minutes),
            *common_train_flags(args),
        ]
    )  # fmt: skip
    record = {
        "command": "python -m lra benchmark listops " + " ".join(_flags(args, LISTOPS_FLAGS)),
        "date": datetime.date.today().isoformat(),
        "machine_before": before,
        "machine_after": machine(),
        "data": {
            "folder": str(data),
            "min_length": args.min_length,
            "max_length": args.max_length,
            "sizes": [args.train, args.dev, args.test],
        },
        "run": _summary(result, run_dir),
    }
    update_results(args.results, "listops", record)
    return record


def adding_data(args: argparse.Namespace, length: int) -> Path:
    from lra.data.synthetic import CURRICULUM_MIN_LOG2
    from lra.generate import generate_synthetic

    data = args.data_root / f"adding-{length}-seed{args.seed}"
    if not (data / "test" / "meta.json").is_file():
        print(f"generating Adding at N = {length} into {data}")
        sizes = (args.train, args.dev, args.test)
        generate_synthetic("adding", data, sizes, args.seed, length, min_log2=CURRICULUM_MIN_LOG2)
    return data


def run_adding(args: argparse.Namespace) -> dict:
    names = args.attentions or linear_mechanisms()
    unknown = [n for n in names if n not in core.list_attentions()]
    if unknown:
        raise ValueError(f"unknown attention {unknown}; registered: {core.list_attentions()}")
    if args.curriculum and not 0 < args.short_share < 1:
        raise ValueError(f"--short-share must lie strictly between 0 and 1, got {args.short_share}")
    if any(length >= args.length for length in args.curriculum):
        raise ValueError(f"--curriculum lengths must be shorter than --length {args.length}, got {args.curriculum}")
    data = adding_data(args, args.length)
    stages = [(length, adding_data(args, length)) for length in args.curriculum]
    print(f"{len(names)} mechanisms in {args.total_minutes} minutes: {' '.join(names)}")
    flags = ["--batch-size", str(args.batch_size), "--set", f"train.warmup={args.warmup}", "--eval-every",
             str(args.eval_every), "--eval-batches", str(args.eval_batches), "--set", "model.positions=false",
             "--stop-at-dev", str(args.stop_mse), *common_train_flags(args)]  # fmt: skip
    before, runs, started = machine(), [], time.time()
    deadline = started + 60 * args.total_minutes
    for index, name in enumerate(names):
        # an equal share of what is left; building, dev evaluations and the test take about a fifth of it
        training = 0.8 * max(deadline - time.time(), 0.0) / (len(names) - index)
        run_dir = args.runs_root / f"adding-{args.length}-seed{args.seed}-{name}"
        init, short = [], []
        curriculum_left = args.short_share * training
        for stage, (length, stage_data) in enumerate(stages):
            # what the curriculum has left, split evenly over the stages still to come
            budget = curriculum_left / (len(stages) - stage)
            stage_dir = args.runs_root / f"adding-{args.length}-seed{args.seed}-{name}-short{length}"
            result = train_once(
                ["--task", "adding", "--attention", name, "--data", str(stage_data), "--run-dir", str(stage_dir),
                 "--model-length", str(args.length), "--trim-padding", "--steps", str(args.short_steps), "--lr",
                 str(args.short_lr), "--max-minutes", f"{max(budget, 1.0) / 60:.4f}", *init, *flags]
            )  # fmt: skip
            training -= result["train_seconds"]
            curriculum_left -= result["train_seconds"]
            best = stage_dir / "checkpoints" / "best.pt"
            init = ["--init-from", str(best if best.is_file() else stage_dir / "checkpoints" / "last.pt")]
            short.append({"length": length, "steps_done": result["steps_done"], "train_seconds": result["train_seconds"],
                          "test_mse": result["test"]["mse"]})  # fmt: skip
        result = train_once(
            ["--task", "adding", "--attention", name, "--data", str(data), "--run-dir", str(run_dir), "--steps",
             str(args.steps), "--lr", str(args.lr), "--max-minutes", f"{max(training, 1.0) / 60:.4f}", *init, *flags]
        )  # fmt: skip
        entry = _summary(result, run_dir)
        entry["complexity"] = core.attention_info(name).complexity
        entry["curriculum"] = short
        runs.append(entry)
    record = {
        "command": "python -m lra benchmark adding " + " ".join(_flags(args, ADDING_FLAGS)),
        "date": datetime.date.today().isoformat(),
        "machine_before": before,
        "machine_after": machine(),
        "wall_minutes": round((time.time() - started) / 60, 2),
        "data": {
            "folder": str(data),
            "length": args.length,
            "curriculum": args.curriculum,
            "sizes": [args.train, args.dev, args.test],
        },  # fmt: skip
        "runs": runs,
    }
    update_results(args.results, "adding", record)
    return record


LISTOPS_FLAGS = ("minutes", "attention", "min_length", "max_length", "steps", "batch_size", "lr", "warmup", "dropout", "seed")
ADDING_FLAGS = (
    "length",
    "total_minutes",
    "curriculum",
    "short_share",
    "short_steps",
    "short_lr",
    "steps",
    "lr",
    "stop_mse",
    "batch_size",
    "warmup",
    "dropout",
    "seed",
)


def _flags(args: argparse.Namespace, names: tuple[str, ...]) -> list[str]:
    def text(value) -> str:
        return " ".join(map(str, value)) if isinstance(value, list) else str(value)

    flags = [f"--{name.replace('_', '-')} {text(getattr(args, name))}" for name in names]
    return flags + [f"--set {assignment}" for assignment in args.set]


def _summary(result: dict, run_dir: Path) -> dict:
    """The fields of a ``result.json`` that the tables show."""
    keys = (
        "attention",
        "layers",
        "parameters",
        "seq_len",
        "steps_done",
        "steps_planned",
        "best_step",
        "train_seconds",
        "majority_accuracy",
        "trivial_mse",
        "trivial_accuracy",
    )
    entry = {key: result[key] for key in keys if key in result}
    entry["test"] = {k: v for k, v in result["test"].items() if k != "examples"}
    entry["test_examples"] = result["test"]["examples"]
    entry["model"] = result["config"]["model"]
    entry["run_dir"] = str(run_dir)
    return entry
