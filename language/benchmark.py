"""``python -m language benchmark-kjv``: a small Primal.+ transformer_lm (Chen et al., NeurIPS 2023: the last
layer is causal Primal-Attention) and the softmax transformer_lm of the same size, trained side by side on the KJV
corpus for the same wall time with the same seed. Each run ends with fairseq's validation pass over the whole
validation split (the same perplexity ``fairseq-eval-lm`` reports with ``--context-window 0``; the tests check the two
agree), which is the number compared.

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
from language import train

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


def run_benchmark(args: argparse.Namespace) -> dict:
    """Train both models at once; returns the summary also written to ``OUT/benchmark.json``.

    Raises:
        RuntimeError: when a run ended without a validation pass.
    """
    with ThreadPoolExecutor(max_workers=len(RIVALS)) as pool:
        trainings = list(pool.map(lambda item: train.run_training(_train_args(args, item[1]), position=item[0]),
                                  enumerate(RIVALS)))
    valid = {name: t["final_valid_ppl"] for name, t in zip(RIVALS, trainings)}
    missing = [name for name, ppl in valid.items() if ppl is None]
    if missing:
        raise RuntimeError(f"no validation result for {missing}; see train.log in {args.out}")
    ratio = valid["kjv-primal"] / valid["kjv-softmax"]
    result = {
        "minutes_per_model": args.minutes,
        "threads_per_model": args.threads,
        "seed": args.seed,
        "valid_ppl": valid,
        "updates": {name: t["valid"][-1].get("valid_num_updates") for name, t in zip(RIVALS, trainings)},
        "ratio_primal_over_softmax": round(ratio, 4),
        "tolerance": args.tolerance,
        "passed": ratio <= 1.0 + args.tolerance,
        "runs": dict(zip(RIVALS, trainings)),
    }
    write_json(result, args.out / "benchmark.json")
    return result


def main(args: argparse.Namespace) -> int:
    result = run_benchmark(args)
    print(json.dumps({k: result[k] for k in ("valid_ppl", "updates", "ratio_primal_over_softmax", "passed")}))
    print(f"result: {args.out / 'benchmark.json'}")
    return 0 if result["passed"] else 3
