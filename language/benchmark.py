"""``python -m language benchmark-kjv``: a small Primal.+ transformer_lm (Chen et al., NeurIPS 2023: the last
layer is causal Primal-Attention) against the softmax transformer_lm of the same size, on the KJV corpus.

Both models get the same architecture, optimiser, seed (hence data order) and training budget: ``--minutes`` of
fairseq's own training clock (``--stop-time-hours``, which starts when the trainer is built and includes its
periodic validation). "Beside it" has two fair readings, chosen by ``--schedule``:

- ``concurrent`` (default): both train at once with one thread each. Whatever else loads the machine loads both
  runs alike, so neither is favoured by the moment it ran.
- ``sequential``: one after the other with two threads each (``--threads`` overrides either default).

After training, ``fairseq-eval-lm`` scores each ``checkpoint_last.pt`` (the model at the end of the budget) on the
whole validation split with the training block length and no extra context. fairseq reports the loss in base 2
and the perplexity as ``2 ** loss`` (the same number as ``exp`` of the loss in nats). That perplexity is the one
compared; the trainer's final validation perplexity is kept beside it as a check.

Target: primal ppl <= (1 + ``--tolerance``) x softmax ppl after 10 minutes each on CPU. Writes
``OUT/benchmark.json`` and a markdown report (default ``docs/results/language.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from core.engine import write_json
from core.engine.machine import load_average
from language import evaluate, prepare, train
from language.config import load_config, parse_overrides
from language.data.corpus import check_binarized
from language.process import REPO_ROOT
from language.report import render_report

RIVALS = ("kjv-primal", "kjv-softmax")
SCHEDULES = ("concurrent", "sequential")
DEFAULT_DATA = Path("data/language/kjv-bin")
_PARAMS = re.compile(r"num\. shared model params: ([0-9,]+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help=f"binarised KJV corpus; prepared from the Debian Bible first when missing "
                             f"(default: {DEFAULT_DATA}, raw text beside it in data/language/kjv)")
    parser.add_argument("--out", type=Path, default=Path("runs/language/kjv-benchmark"),
                        help="run folder; one sub-folder per model (default: runs/language/kjv-benchmark)")
    parser.add_argument("--minutes", type=float, default=10.0,
                        help="training budget per model, on fairseq's training clock (default: 10)")
    parser.add_argument("--schedule", choices=SCHEDULES, default="concurrent",
                        help="concurrent: both models at once, 1 thread each; sequential: one after the other, "
                             "2 threads each (default: concurrent)")
    parser.add_argument("--threads", type=int,
                        help="CPU threads per model (default: 1 when concurrent, 2 when sequential)")
    parser.add_argument("--seed", type=int, default=1, help="seed of both runs (default: 1)")
    parser.add_argument("--tolerance", type=float, default=0.10,
                        help="pass when primal ppl <= (1 + tolerance) * softmax ppl (default: 0.10)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FLAG=VALUE",
                        help="override a flag of both configurations, e.g. --set decoder-layers=2 (repeatable)")
    parser.add_argument("--set-primal", dest="primal_overrides", action="append", default=[], metavar="FLAG=VALUE",
                        help="override a flag of the primal model only (its primal settings, e.g. --set-primal "
                             "ksvd-eta=0.05); the report lists every such change (repeatable)")
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "docs" / "results" / "language.md",
                        help="markdown report to (over)write (default: docs/results/language.md)")
    parser.add_argument("--no-report", action="store_true", help="write only OUT/benchmark.json")


def threads_per_model(args: argparse.Namespace) -> int:
    """``--threads``, or the schedule's default: 1 when concurrent, 2 when sequential."""
    if args.threads is not None:
        return args.threads
    return 1 if args.schedule == "concurrent" else 2


def _train_args(args: argparse.Namespace, config: str) -> argparse.Namespace:
    overrides = list(args.overrides) + (list(args.primal_overrides) if config == "kjv-primal" else [])
    return argparse.Namespace(
        config=config, data=args.data, save_dir=args.out / config, max_update=None, minutes=args.minutes,
        seed=args.seed, threads=threads_per_model(args), nproc=1, log_interval=10, overrides=overrides,
        timeout=args.minutes * 60 + 900, dry_run=False, extra=[],
    )


def ensure_corpus(data: Path) -> None:
    """Prepare the KJV corpus into ``data`` (raw text in a ``kjv`` folder beside it) unless already binarised."""
    if (data / "dict.txt").is_file():
        check_binarized(data)
        return
    print(f"{data} is not prepared yet: running prepare-kjv", flush=True)
    parser = argparse.ArgumentParser()
    prepare.add_kjv_arguments(parser)
    prepare.main_kjv(parser.parse_args(["--out", str(data.parent / "kjv"), "--dest", str(data)]))


def _train_all(args: argparse.Namespace) -> list[dict]:
    jobs = [(position, _train_args(args, name)) for position, name in enumerate(RIVALS)]
    if args.schedule == "sequential":
        return [train.run_training(job, position=0) for _, job in jobs]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        return list(pool.map(lambda item: train.run_training(item[1], position=item[0]), jobs))


def _evaluate(args: argparse.Namespace, name: str) -> dict:
    run = args.out / name
    return evaluate.run_eval(argparse.Namespace(
        data=args.data, path=run / "checkpoint_last.pt", subset="valid", tokens_per_sample=None, context_window=0,
        max_tokens=4096, threads=2, timeout=900, out=run / "eval_valid.json",
    ))


def parameter_count(log_path: Path) -> int | None:
    """Model parameters as fairseq-train logged them (``num. shared model params``), else None."""
    if not log_path.is_file():
        return None
    found = _PARAMS.findall(log_path.read_text(encoding="utf-8", errors="replace"))
    return int(found[-1].replace(",", "")) if found else None


def epochs_trained(training: dict) -> float | None:
    """Passes over the training split, from fairseq's last periodic record (its ``update`` field is the epoch
    progress, e.g. 1.25) scaled to the final update count; None when there was no periodic record."""
    inner, valid = training.get("last_train_inner"), training["valid"]
    if not inner or not inner.get("num_updates") or "update" not in inner or not valid:
        return None
    return round(inner["update"] * valid[-1]["valid_num_updates"] / inner["num_updates"], 2)


def summarise(args: argparse.Namespace, trainings: list[dict], evaluations: list[dict], started: str) -> dict:
    """The benchmark record (also rendered as the markdown report).

    Raises:
        RuntimeError: when a training run ended without a validation pass.
    """
    missing = [name for name, t in zip(RIVALS, trainings) if not t["valid"]]
    if missing:
        raise RuntimeError(f"no validation result for {missing}; see train.log in {args.out}")
    models = {}
    for name, t, e in zip(RIVALS, trainings, evaluations):
        config = load_config(name)
        merged = {**config["fairseq_args"], **parse_overrides(_train_args(args, name).overrides)}
        last = t["valid"][-1]
        models[name] = {
            "arch": merged["arch"],
            "criterion": merged["criterion"],
            "ksvd": {k: merged[k] for k in ("ksvd-eta", "ksvd-scaling") if k in merged} or None,
            "parameters": parameter_count(args.out / name / "train.log"),
            "updates": int(last.get("valid_num_updates", 0)),
            "epochs": epochs_trained(t),
            "train_wall_seconds": t["wall_seconds"],
            "words_per_second": t.get("mean_train_wps"),
            "valid_ppl": e["ppl"],
            "valid_loss_base2": e["loss_base2"],
            "valid_tokens": e.get("tokens"),
            "trainer_valid_ppl": t["final_valid_ppl"],
        }
    ratio = models["kjv-primal"]["valid_ppl"] / models["kjv-softmax"]["valid_ppl"]
    return {
        "started": started,
        "minutes_per_model": args.minutes,
        "schedule": args.schedule,
        "threads_per_model": threads_per_model(args),
        "seed": args.seed,
        "data": str(args.data),
        "overrides": list(args.overrides),
        "primal_overrides": list(args.primal_overrides),
        "load_average_after": load_average(),
        "cpu_count": os.cpu_count(),
        "valid_ppl": {name: m["valid_ppl"] for name, m in models.items()},
        "updates": {name: m["updates"] for name, m in models.items()},
        "ratio_primal_over_softmax": round(ratio, 4),
        "tolerance": args.tolerance,
        "passed": ratio <= 1.0 + args.tolerance,
        "models": models,
        "runs": dict(zip(RIVALS, trainings)),
    }


def run_benchmark(args: argparse.Namespace) -> dict:
    """Train both models, evaluate both with fairseq-eval-lm; returns the summary also written to
    ``OUT/benchmark.json`` (and to the markdown report unless ``--no-report``)."""
    ensure_corpus(args.data)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_before = load_average()
    begin = time.monotonic()
    trainings = _train_all(args)
    evaluations = [_evaluate(args, name) for name in RIVALS]
    result = summarise(args, trainings, evaluations, started)
    result["load_average_before"] = load_before
    result["total_wall_seconds"] = round(time.monotonic() - begin, 1)
    write_json(result, args.out / "benchmark.json")
    if not args.no_report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(render_report(result), encoding="utf-8")
    return result


def main(args: argparse.Namespace) -> int:
    result = run_benchmark(args)
    print(json.dumps({k: result[k] for k in ("valid_ppl", "updates", "ratio_primal_over_softmax", "passed")}))
    print(f"result: {args.out / 'benchmark.json'}" + ("" if args.no_report else f"  report: {args.report}"))
    return 0 if result["passed"] else 3
