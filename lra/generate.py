"""``python -m lra generate <task>``: offline data that needs no download.

- ``listops``: LRA-grammar TSVs (``basic_{train,val,test}.tsv``, the release format), optionally prepared into
  arrays at once with ``--prepare-to``.
- ``pathfinder``: PNGs and text metadata in the ``pathfinder32/<difficulty>`` layout, optionally prepared.
- ``adding``, ``temporal_order``: PSF's synthetic tasks, written straight to array splits.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.engine import write_json
from lra.data import listops, synthetic
from lra.data.arrays import SPLITS, write_split
from lra.data.pathfinder import PathfinderParams, write_release
from lra.prepare import prepare

TASKS = ("listops", "pathfinder", "adding", "temporal_order")
DEFAULT_SIZES = {
    "listops": (96_000, 2_000, 2_000),
    "pathfinder": (160_000, 20_000, 20_000),
    "adding": (200_000, 5_000, 5_000),
    "temporal_order": (200_000, 5_000, 5_000),
}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="generate ListOps, Pathfinder, Adding or Temporal Order data offline",
        description="Generate a task's data without downloads. ListOps and Pathfinder are written in the real "
        "release format (then prepared with --prepare-to); Adding and Temporal Order straight to array splits.",
    )
    parser.add_argument("task", choices=TASKS, help="which task to generate")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (release files, or array splits for adding/temporal_order)"
    )
    parser.add_argument("--train", type=int, default=None, help="training examples (defaults: LRA/PSF sizes)")
    parser.add_argument("--dev", type=int, default=None, help="validation examples")
    parser.add_argument("--test", type=int, default=None, help="test examples")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same data")
    parser.add_argument("--min-length", type=int, default=500, help="listops: keep trees longer than this (LRA: 500)")
    parser.add_argument("--max-length", type=int, default=2000, help="listops: keep trees shorter than this (LRA: 2000)")
    parser.add_argument("--max-depth", type=int, default=10, help="listops: maximum tree depth (LRA: 10)")
    parser.add_argument("--max-args", type=int, default=10, help="listops: maximum operator arguments (LRA: 10)")
    parser.add_argument(
        "--length", type=int, default=1024, help="adding/temporal_order: sequence length, a power of two in 128..16384"
    )
    parser.add_argument("--contour-length", type=int, default=14, help="pathfinder: paddles per target contour (LRA hard: 14)")
    parser.add_argument(
        "--continuity", type=float, default=1.0, help="pathfinder: turn penalty; larger is straighter (LRA: 1.0)"
    )
    parser.add_argument(
        "--prepare-to", type=Path, default=None, help="listops/pathfinder: also prepare array splits into this folder"
    )
    parser.set_defaults(run=run)


def _sizes(args: argparse.Namespace) -> tuple[int, int, int]:
    defaults = DEFAULT_SIZES[args.task]
    sizes = tuple(d if v is None else v for v, d in zip((args.train, args.dev, args.test), defaults))
    if min(sizes) < 1:
        raise ValueError(f"--train, --dev and --test must be >= 1, got {sizes}")
    return sizes


def generate_listops(
    out: Path,
    sizes: tuple[int, int, int],
    seed: int,
    min_length: int,
    max_length: int,
    max_depth: int = 10,
    max_args: int = 10,
) -> dict:
    """Write ``basic_{train,val,test}.tsv`` with ``sum(sizes)`` distinct expressions."""
    out.mkdir(parents=True, exist_ok=True)
    examples = listops.generate_examples(sum(sizes), seed, min_length, max_length, max_depth, max_args)
    progress = tqdm(total=sum(sizes), desc="listops expressions")
    files = ("basic_train.tsv", "basic_val.tsv", "basic_test.tsv")
    label_counts = {}
    for file, size in zip(files, sizes):
        counts = np.zeros(10, dtype=int)
        with (out / file).open("w", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t")
            writer.writerow(["Source", "Target"])
            for _ in range(size):
                source, label = next(examples)
                writer.writerow([source, label])
                counts[label] += 1
                progress.update(1)
        label_counts[file] = counts.tolist()
    progress.close()
    return {"files": list(files), "label_counts": label_counts}


def generate_synthetic(task: str, out: Path, sizes: tuple[int, int, int], seed: int, length: int, **options) -> dict:
    """Write array splits of Adding or Temporal Order at ``length``; each split has its own seed.

    ``options`` go to the generator, e.g. ``min_log2`` of :func:`lra.data.synthetic.generate_adding`.
    """
    make = synthetic.generate_adding if task == "adding" else synthetic.generate_temporal_order
    kind = "adding" if task == "adding" else "tokens"
    info = {}
    for offset, (name, size) in enumerate(tqdm(list(zip(SPLITS, sizes)), desc=f"{task} splits")):
        arrays = make(size, length, seed=seed * 1000 + offset, **options)
        write_split(out, name, arrays, {"kind": kind, "task": task, "max_length": length, "seed": seed})
        info[name] = size
    return {"splits": info, "length": length}


def run(args: argparse.Namespace) -> dict:
    sizes = _sizes(args)
    start = time.time()
    summary: dict = {"task": args.task, "seed": args.seed, "sizes": dict(zip(SPLITS, sizes))}
    if args.task == "listops":
        summary.update(
            generate_listops(args.out, sizes, args.seed, args.min_length, args.max_length, args.max_depth, args.max_args)
        )
        summary.update(min_length=args.min_length, max_length=args.max_length)
    elif args.task == "pathfinder":
        params = PathfinderParams(contour_length=args.contour_length, continuity=args.continuity)
        with tqdm(total=sum(sizes), desc="pathfinder images") as progress:
            write_release(args.out, sum(sizes), args.seed, params, progress=progress)
        summary["fractions_note"] = "prepare splits all images 80/10/10; --train/--dev/--test only set the total"
    else:
        synthetic.check_length(args.length)
        summary.update(generate_synthetic(args.task, args.out, sizes, args.seed, args.length))
    if args.prepare_to is not None and args.task in ("listops", "pathfinder"):
        length = max(args.max_length - 1, 1) if args.task == "listops" else None
        summary["prepared"] = prepare(args.task, args.out, args.prepare_to, max_length=length, seed=args.seed)
    summary["seconds"] = round(time.time() - start, 2)
    write_json(summary, args.out / "generate.json")
    print(f"generated {args.task} into {args.out} in {summary['seconds']} s; summary in {args.out / 'generate.json'}")
    return summary
