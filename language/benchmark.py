"""``python -m language benchmark-kjv``: a small Primal.+ transformer_lm (Chen et al., NeurIPS 2023: the last
layer is causal Primal-Attention) and the softmax transformer_lm of the same size, trained side by side on the KJV
corpus for the same wall time with the same seed, then scored on the validation split with ``fairseq-eval-lm``.

Target: the primal model's validation perplexity is within ``--tolerance`` (10%) of the softmax model's after
10 minutes each on CPU. The result (both runs, both perplexities, the ratio, pass/fail) goes to
``OUT/benchmark.json``.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core.engine import write_json
from language import evaluate, train

RIVALS = ("kjv-primal", "kjv-softmax")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="binarised KJV corpus (prepare-kjv --dest)")
    parser.add_argument("--out", type=Path, default=Path("runs/kjv-benchmark"),
                        help="run folder; one sub-folder per model (default: runs/kjv-benchmark)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training wall time per model (default: 10)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads per model; both train at once, so 2 x threads cores are used (default: 1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of both runs (default: 1)")
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="pass when primal ppl <= (1 + tolerance) * softmax ppl (default: 0.10)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FLAG=VALUE",
                        help="override a flag of both configurations, e.g. --set decoder-layers=2 (repeatable)")


def _train_args(args: argparse.Namespace, config: str) -> argparse.Namespace:
    return argparse.Namespace(
        config=config, data=args.data, save_dir=args.out / config, max_update=None, minutes=args.minutes,
        seed=args.seed, threads=args.threads, nproc=1, log_interval=10, overrides=list(args.overrides),
        timeout=args.minutes * 60 + 600, dry_run=False, extra=[],
    )


def _eval_args(args: argparse.Namespace, config: str) -> argparse.Namespace:
    run = args.out / config
    return argparse.Namespace(
        data=args.data, path=run / "checkpoint_last.pt", subset="valid", tokens_per_sample=None, context_window=0,
        max_tokens=4096, threads=args.threads, timeout=900, out=run / "eval_valid.json",
    )


def run_benchmark(args: argparse.Namespace) -> dict:
    """Train both models at once, evaluate both; returns the summary also written to ``OUT/benchmark.json``."""
    with ThreadPoolExecutor(max_workers=len(RIVALS)) as pool:
        trainings = list(pool.map(lambda item: train.run_training(_train_args(args, item[1]), position=item[0]),
                                  enumerate(RIVALS)))
        evaluations = list(pool.map(lambda name: evaluate.run_eval(_eval_args(args, name)), RIVALS))
    primal, softmax = evaluations
    ratio = primal["ppl"] / softmax["ppl"]
    result = {
        "minutes_per_model": args.minutes,
        "threads_per_model": args.threads,
        "seed": args.seed,
        "valid_ppl": {name: e["ppl"] for name, e in zip(RIVALS, evaluations)},
        "updates": {name: (t["last_train_inner"] or {}).get("num_updates") for name, t in zip(RIVALS, trainings)},
        "ratio_primal_over_softmax": round(ratio, 4),
        "tolerance": args.tolerance,
        "passed": ratio <= 1.0 + args.tolerance,
        "runs": {name: {"train": t, "eval": e} for name, t, e in zip(RIVALS, trainings, evaluations)},
    }
    write_json(result, args.out / "benchmark.json")
    return result


def main(args: argparse.Namespace) -> int:
    result = run_benchmark(args)
    print(json.dumps({k: result[k] for k in ("valid_ppl", "updates", "ratio_primal_over_softmax", "passed")}))
    print(f"result: {args.out / 'benchmark.json'}")
    return 0 if result["passed"] else 3
