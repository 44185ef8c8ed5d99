"""The flags of ``python -m lra train`` and the task config they resolve to (the command is :mod:`lra.train`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lra.config import TASKS, apply_overrides, load_config, parse_value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every flag of ``python -m lra train``, with its help."""
    parser.add_argument("--task", required=True, choices=TASKS, help="task whose config (lra/configs/<task>.json) is used")
    parser.add_argument(
        "--attention",
        required=True,
        help="a core registry name used in every layer (softmax, primal, linear, ...; core.list_attentions()), or "
        "primalformer / primal+trans / transformer",
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="prepared data folder with train/dev/test (default data/lra/<task>)"
    )
    parser.add_argument(
        "--run-dir", type=Path, default=None, help="output folder (default runs/lra/<task>-<attention>-seed<seed>)"
    )
    parser.add_argument("--config", type=Path, default=None, help="a JSON config file instead of the task's default")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override a config value, e.g. --set train.lr=2e-4 (repeatable)",
    )
    parser.add_argument(
        "--attention-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="option of the chosen mechanism, e.g. --attention-option num_landmarks=64 (repeatable)",
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (overrides train.steps)")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="global batch size, split evenly over DDP processes (overrides train.batch_size)",
    )
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate of the one-cycle schedule (train.lr)")
    parser.add_argument(
        "--eval-every", type=int, default=None, help="evaluate on dev every this many steps (train.eval_every)"
    )
    parser.add_argument(
        "--eval-batches", type=int, default=None, help="dev batches per evaluation, 0 = all (train.eval_batches)"
    )
    parser.add_argument("--max-minutes", type=float, default=None, help="stop training after this wall time, then test")
    parser.add_argument(
        "--stop-at-dev",
        type=float,
        default=None,
        metavar="VALUE",
        help="stop training once a dev evaluation reaches VALUE (accuracy at least VALUE; for Adding, MSE at most "
        "VALUE), then test",
    )
    parser.add_argument(
        "--trim-padding",
        action="store_true",
        help="cut each batch to its longest real sequence instead of the model length (faster on CPU)",
    )
    parser.add_argument(
        "--reference-pixel-mask",
        action="store_true",
        help="image/pathfinder: treat black pixels as padding, as the reference code does",
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    parser.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA (never used on CPU)")
    parser.add_argument("--seed", type=int, default=42, help="seed of weights, shuffling and dropout (reference: 42)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--log-every", type=int, default=10, help="write a training row every this many steps")
    parser.add_argument("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    parser.add_argument(
        "--init-from",
        type=Path,
        default=None,
        help="start from the model weights of this checkpoint (best.pt or last.pt of another run; fresh optimiser "
        "and schedule); ignored when the run folder resumes",
    )
    parser.add_argument(
        "--model-length",
        type=int,
        default=None,
        help="the model's sequence length (default: the data's longest, rounded up to a power of two); e.g. train "
        "on short sequences a model meant for long ones",
    )


def resolve_config(args: argparse.Namespace) -> dict:
    config = load_config(args.task, args.config)
    config = apply_overrides(config, args.set)
    for flag, key in (
        ("steps", "steps"),
        ("batch_size", "batch_size"),
        ("lr", "lr"),
        ("eval_every", "eval_every"),
        ("eval_batches", "eval_batches"),
    ):
        value = getattr(args, flag)
        if value is not None:
            config["train"][key] = value
    train = config["train"]
    if train["steps"] < 1 or train["batch_size"] < 1 or train["eval_every"] < 1:
        raise ValueError(
            f"steps, batch_size and eval_every must be >= 1, got {train['steps']}, "
            f"{train['batch_size']}, {train['eval_every']}"
        )
    return config


def attention_options(assignments: list[str]) -> dict:
    options = {}
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--attention-option expects KEY=VALUE, got {assignment!r}")
        key, value = assignment.split("=", 1)
        options[key] = parse_value(value)
    return options
