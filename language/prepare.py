"""``python -m language prepare-kjv`` and ``prepare-wikitext``: corpora for the Primal-Attention language-modelling
experiment (Chen et al., NeurIPS 2023) in the WikiText layout, binarised with ``fairseq-preprocess``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from core.engine import write_json
from language.data.corpus import preprocess_command, token_files
from language.data.kjv import read_kjv, write_wikitext_splits
from language.process import run_logged


def add_kjv_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path,
                        help="folder for wiki.{train,valid,test}.tokens (the raw WikiText-style corpus)")
    parser.add_argument("--dest", type=Path, help="also binarise into this folder with fairseq-preprocess")
    parser.add_argument("--holdout-every", type=int, default=20,
                        help="one valid and one test chapter in every N consecutive chapters (default: 20, ~5%% each)")
    parser.add_argument("--max-chapters", type=int, help="use only the first N chapters (a small slice for tests)")
    parser.add_argument("--bible-command", default="bible", help="the Debian bible-kjv reader (default: bible)")
    parser.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers (default: 1)")


def add_wikitext_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", required=True, type=Path,
                        help="folder with wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens (e.g. wikitext-103/ of "
                             "the wikitext-103-v1 release, or the output of prepare-kjv)")
    parser.add_argument("--dest", required=True, type=Path, help="output folder for the binarised corpus (data-bin)")
    parser.add_argument("--workers", type=int, default=1, help="fairseq-preprocess workers (default: 1)")
    parser.add_argument("--vocab-threshold", type=int, default=0,
                        help="map words seen at most this often to <unk> (default: 0, keep all, as for WikiText-103)")


def binarize(raw_dir: Path, dest: Path, workers: int, vocab_threshold: int = 0) -> dict:
    """fairseq-preprocess a WikiText-layout folder; returns the summary also written to ``dest/prepare.json``."""
    files = token_files(raw_dir)
    command = preprocess_command(raw_dir, dest, workers=workers, vocab_threshold=vocab_threshold)
    progress = tqdm(total=len(files), desc="fairseq-preprocess", unit="split")
    done: set[str] = set()

    def on_line(line: str) -> None:
        for split, path in files.items():
            if f"{path}: " in line and " sents, " in line and split not in done:
                done.add(split)
                progress.update(1)

    try:
        seconds = run_logged(command, dest / "preprocess.log", on_line=on_line)
    finally:
        progress.close()
    vocabulary = sum(1 for _ in open(dest / "dict.txt", encoding="utf-8"))
    summary = {"raw_dir": str(raw_dir), "dest": str(dest), "vocabulary": vocabulary, "seconds": round(seconds, 1),
               "command": command}
    write_json(summary, dest / "prepare.json")
    return summary


def main_kjv(args: argparse.Namespace) -> int:
    print("reading the King James Bible (bible-kjv)", flush=True)
    chapters = read_kjv(args.bible_command)
    stats = write_wikitext_splits(chapters, args.out, args.holdout_every, args.max_chapters)
    write_json({"source": "Debian bible-kjv-text", "holdout_every": args.holdout_every,
                "max_chapters": args.max_chapters, "splits": stats}, args.out / "kjv.json")
    print(json.dumps(stats))
    if args.dest is not None:
        summary = binarize(args.out, args.dest, args.workers)
        print(f"binarised into {args.dest} (vocabulary {summary['vocabulary']}; log {args.dest / 'preprocess.log'})")
    return 0


def main_wikitext(args: argparse.Namespace) -> int:
    summary = binarize(args.raw_dir, args.dest, args.workers, args.vocab_threshold)
    print(f"binarised into {args.dest} (vocabulary {summary['vocabulary']}; log {args.dest / 'preprocess.log'})")
    return 0
