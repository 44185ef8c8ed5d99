"""``python -m language eval``: perplexity of a checkpoint with ``fairseq-eval-lm`` (the evaluation of the
Primal-Attention WikiText-103 experiment, Chen et al., NeurIPS 2023; the official README uses
``--tokens-per-sample 512 --context-window 400``), written as JSON next to the raw log.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from core.engine import write_json
from language import PLUGIN_DIR
from language.data.corpus import check_binarized
from language.fairseq_logs import parse_eval_lm
from language.process import fairseq_executable, run_logged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="binarised corpus the model was trained on")
    parser.add_argument("--path", required=True, type=Path, help="checkpoint, e.g. runs/kjv-primal/checkpoint_best.pt")
    parser.add_argument("--subset", default="test", choices=["train", "valid", "test"], help="split (default: test)")
    parser.add_argument("--tokens-per-sample", type=int,
                        help="block length (default: the checkpoint's training value; the paper uses 512)")
    parser.add_argument("--context-window", type=int, default=0,
                        help="tokens of preceding context fed before each block, conditioned on but not scored "
                             "(default: 0; the paper's README: 400)")
    parser.add_argument("--max-tokens", type=int, default=4096, help="tokens per evaluation batch (default: 4096)")
    parser.add_argument("--threads", type=int, help="CPU threads (OMP_NUM_THREADS)")
    parser.add_argument("--timeout", type=float, help="kill fairseq-eval-lm after this many seconds")
    parser.add_argument("--out", type=Path,
                        help="JSON result (default: eval_<subset>.json next to the checkpoint; the log goes beside it)")


def checkpoint_tokens_per_sample(path: Path) -> int:
    """The ``tokens_per_sample`` a fairseq checkpoint was trained with.

    Raises:
        FileNotFoundError / ValueError: for a missing file or a file that is not a fairseq checkpoint.
    """
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; train first with 'python -m language train'")
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = state.get("cfg") if isinstance(state, dict) else None
    if cfg is None or "task" not in cfg:
        raise ValueError(f"{path} is not a fairseq checkpoint (no 'cfg' with a task section)")
    return int(cfg["task"]["tokens_per_sample"])


def eval_command(args: argparse.Namespace, tokens_per_sample: int) -> list[str]:
    """The ``fairseq-eval-lm`` command for ``args``."""
    if not 0 <= args.context_window < tokens_per_sample:
        raise ValueError(
            f"--context-window must be in [0, tokens_per_sample={tokens_per_sample}), got {args.context_window}"
        )
    command = [
        fairseq_executable("fairseq-eval-lm"), str(args.data), "--path", str(args.path), "--user-dir", str(PLUGIN_DIR),
        "--gen-subset", args.subset, "--tokens-per-sample", str(tokens_per_sample),
        "--context-window", str(args.context_window), "--max-tokens", str(args.max_tokens),
        "--sample-break-mode", "none",
    ]
    if not torch.cuda.is_available():
        command.append("--cpu")
    return command


def run_eval(args: argparse.Namespace) -> dict:
    """Evaluate; returns the result also written as JSON."""
    check_binarized(args.data)
    tokens_per_sample = args.tokens_per_sample or checkpoint_tokens_per_sample(args.path)
    command = eval_command(args, tokens_per_sample)
    out = args.out or args.path.parent / f"eval_{args.subset}.json"
    log_path = out.with_suffix(".log")
    lines: list[str] = []
    print(f"evaluating {args.path} on {args.subset} (log: {log_path})", flush=True)
    seconds = run_logged(command, log_path, on_line=lines.append, timeout=args.timeout, threads=args.threads)
    result = {
        "checkpoint": str(args.path),
        "data": str(args.data),
        "subset": args.subset,
        "tokens_per_sample": tokens_per_sample,
        "context_window": args.context_window,
        "wall_seconds": round(seconds, 1),
        **parse_eval_lm("\n".join(lines)),
        "command": command,
    }
    write_json(result, out)
    return result


def main(args: argparse.Namespace) -> int:
    result = run_eval(args)
    print(json.dumps({k: result[k] for k in ("subset", "ppl", "loss_base2") if k in result}))
    return 0
