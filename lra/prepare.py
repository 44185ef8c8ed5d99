"""``python -m lra prepare <task>``: convert the real ``lra_release`` files (and IMDB, CIFAR-10) into array splits.

Readers live in :mod:`lra.data.text` and :mod:`lra.data.images`; this module maps a task name to its reader,
writes ``train``/``dev``/``test`` splits with :func:`lra.data.arrays.write_split` and a ``prepare.json`` summary.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from core.engine import write_json
from lra.data import images, text
from lra.data.arrays import SPLITS, DataError, write_split

TASKS = ("listops", "text", "retrieval", "image", "pathfinder")
RAW_HELP = {
    "listops": "folder with basic_train.tsv, basic_val.tsv, basic_test.tsv (lra_release/listops-1000)",
    "text": "the aclImdb folder (with train/pos, train/neg, test/pos, test/neg)",
    "retrieval": "folder with new_aan_pairs.{train,eval,test}.tsv (lra_release/tsv_data)",
    "image": "the cifar-10-batches-py folder (data_batch_1..5, test_batch)",
    "pathfinder": "a difficulty folder, e.g. lra_release/pathfinder32/curv_contour_length_14",
}
DEFAULT_MAX_LENGTH = {"listops": 2000, "text": 4000, "retrieval": 4000}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="convert real LRA files into compact array splits",
        description="Convert the real release files of one LRA task into train/dev/test array splits "
        "(one .npy per array plus meta.json per split) and a prepare.json summary.",
    )
    parser.add_argument("task", choices=TASKS, help="which LRA task to prepare")
    parser.add_argument(
        "--raw", required=True, type=Path, help="input folder: " + "; ".join(f"{t}: {h}" for t, h in RAW_HELP.items())
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder; train/, dev/, test/ are written inside it")
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="tokens (bytes) kept per example for listops/text/retrieval; defaults 2000/4000/4000 as in LRA",
    )
    parser.add_argument(
        "--drop-brackets",
        action="store_true",
        help="listops only: reproduce the bracket-dropping tokenizer of the copied LRA pipelines (a known bug; "
        "for comparisons with published numbers)",
    )
    parser.add_argument("--no-verify", action="store_true", help="listops only: skip re-evaluating every label")
    parser.add_argument("--seed", type=int, default=0, help="pathfinder only: seed of the random 80/10/10 split")
    parser.set_defaults(run=run)


def prepare(
    task: str,
    raw: Path,
    out: Path,
    max_length: int | None = None,
    drop_brackets: bool = False,
    verify: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Prepare one task; returns the summary written to ``out/prepare.json``.

    Raises:
        DataError: on missing or malformed input, with what was expected.
    """
    if not raw.exists():
        raise DataError(f"--raw {raw} does not exist; for {task} it must be the {RAW_HELP[task]}")
    start = time.time()
    length = max_length or DEFAULT_MAX_LENGTH.get(task)
    meta: dict = {"task": task, "source": str(raw)}
    extra: dict = {}
    if task == "listops":
        splits = {
            name: text.read_listops_tsv(raw / file, length, drop_brackets, verify, progress)
            for name, file in text.LISTOPS_FILES.items()
        }
        meta.update(kind="tokens", max_length=length, drop_brackets=drop_brackets)
    elif task == "text":
        splits = {name: text.read_imdb_split(raw / folder, length, progress) for name, folder in text.IMDB_FOLDERS.items()}
        meta.update(kind="tokens", max_length=length, note="dev = test = IMDB test, as in LRA")
    elif task == "retrieval":
        splits = {name: text.read_aan_tsv(raw / file, length, progress) for name, file in text.AAN_FILES.items()}
        meta.update(kind="pair", max_length=length)
    elif task == "image":
        splits = images.read_cifar(raw)
        meta.update(kind="pixels", max_length=1024)
    elif task == "pathfinder":
        splits, skipped = images.read_pathfinder(raw, seed=seed)
        meta.update(kind="pixels", max_length=1024, split_seed=seed)
        extra["empty_images_skipped"] = skipped
    else:
        raise DataError(f"unknown task {task!r}; expected one of {TASKS}")
    summary = {**meta, **extra, "splits": {}}
    for name in SPLITS:
        write_split(out, name, splits[name], meta)
        labels = splits[name]["labels"]
        summary["splits"][name] = {"size": int(len(labels)), "label_counts": np.bincount(labels).tolist()}
    summary["seconds"] = round(time.time() - start, 2)
    write_json(summary, out / "prepare.json")
    return summary


def run(args: argparse.Namespace) -> dict:
    summary = prepare(args.task, args.raw, args.out, args.max_length, args.drop_brackets, not args.no_verify, args.seed)
    sizes = ", ".join(f"{name} {info['size']}" for name, info in summary["splits"].items())
    print(f"prepared {args.task} into {args.out}: {sizes} ({summary['seconds']} s); summary in {args.out / 'prepare.json'}")
    return summary
