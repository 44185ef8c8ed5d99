"""``python -m timeseries``: train and evaluate classifiers on UEA data sets, then tabulate against the paper.

With no arguments it runs the main job: PrimalFormer, Primal.+Transformer and the softmax Transformer on
JapaneseVowels (shipped with sktime), paper protocol, seed 666, and prints the table beside the published
98.4 / 98.9 / 98.7 (Chen et al., NeurIPS 2023, Table 1).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import multiprocessing
import multiprocessing.forkserver
import os
import pkgutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

import core
from core.engine import flush_denormals, select_device, write_json
from timeseries.config import PAPER_MODELS, canonical_model, resolve_config
from timeseries.data import PAPER_DATASETS, PROTOCOLS, find_dataset_files, load_uea
from timeseries.report import format_table, import_plotting, plot_learning_curves, read_metrics, summarise, write_summary_csv
from timeseries.train import TimeLimitReached, train_run

DEFAULT_DATASET = "JapaneseVowels"


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, and ``{registry}`` in a help text replaced by the registry's names only when the help
    is printed: listing them imports every attention module (about 1.6 s that a training command does not need)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = super()._get_help_string(action)
        return text.replace("{registry}", ", ".join(core.list_attentions())) if "{registry}" in text else text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m timeseries",
        description="UEA multivariate classification with PrimalFormer, Primal.+Transformer, the Transformer and any "
        "core attention. Without arguments: the main job (three models on JapaneseVowels, paper protocol, one seed).",
        formatter_class=_HelpFormatter,
    )
    data = parser.add_argument_group("data and protocol")
    data.add_argument("--dataset", nargs="+", default=[DEFAULT_DATASET],
                      help=f"UEA data set name(s), or 'all' for the paper's ten: {', '.join(PAPER_DATASETS)}")
    data.add_argument("--data-dir", default=None,
                      help="root of the Multivariate2018_ts archive (<dir>/<Name>/<Name>_TRAIN.ts); "
                      "default: the data shipped with sktime (JapaneseVowels, BasicMotions)")
    data.add_argument("--protocol", choices=PROTOCOLS, default="paper",
                      help="paper: validate on the test file and report the best test accuracy over epochs (the "
                      "original code); holdout: validate on a stratified split of the training file and report test "
                      "accuracy at the best validation epoch")
    data.add_argument("--val-ratio", type=float, default=0.2, help="validation fraction of the training file (holdout)")
    data.add_argument("--split-seed", type=int, default=1337, help="seed of the holdout split (fixed across seeds)")

    model = parser.add_argument_group("model (defaults come from timeseries/configs/<dataset>/<model>.json)")
    model.add_argument("--model", nargs="+", default=list(PAPER_MODELS),
                       help="primalformer (all layers primal), primal+trans (last layer primal), transformer (softmax), "
                       "or any registry name ({registry}); 'all' = the three paper models")
    model.add_argument("--config", default=None, help="JSON file of settings applied over the per-(dataset, model) file")
    model.add_argument("--d-model", type=int, default=None, help="model width d (paper: 512)")
    model.add_argument("--num-heads", type=int, default=None, help="attention heads (paper: 8)")
    model.add_argument("--ffn-dim", type=int, default=None, help="feed-forward width (paper: 2048)")
    model.add_argument("--num-layers", type=int, default=None, help="encoder layers (paper: 2)")
    model.add_argument("--dropout", type=float, default=None, help="dropout (paper: 0.1)")
    model.add_argument("--low-rank", type=int, default=None, help="s, singular directions per primal layer")
    model.add_argument("--rank-multi", type=int, default=None, help="m; a primal layer samples n = min(L, s*m) steps")
    model.add_argument("--eta", type=float, default=None, help="weight of the KSVD loss")
    model.add_argument("--input-norm", action=argparse.BooleanOptionalAction, default=None,
                       help="LayerNorm the sqrt(d)-scaled input embedding before the first layer (the original code "
                       "does not, so its first primal layer starts with a KSVD term near 500)")
    model.add_argument("--original-padding", action=argparse.BooleanOptionalAction, default=None,
                       help="let attention see padded steps, as the official code does (default: padding is masked)")

    train = parser.add_argument_group("training")
    train.add_argument("--seeds", type=int, nargs="+", default=[666], help="training seeds (666 is the original's)")
    train.add_argument("--epochs", type=int, default=None, help="training epochs (paper: 100, 400 for PEMS-SF)")
    train.add_argument("--batch-size", type=int, default=None, help="series per training batch (paper: 16)")
    train.add_argument("--lr", type=float, default=None, help="learning rate (paper: 1e-3)")
    train.add_argument("--optimizer", choices=("RAdam", "Adam", "AdamW"), default=None, help="optimiser (paper: RAdam)")
    train.add_argument("--weight-decay", type=float, default=None, help="weight decay (paper: 0)")
    train.add_argument("--clip-norm", type=float, default=None, help="gradient-norm clipping, 0 = off (paper: 4)")
    train.add_argument("--eval-every", type=int, default=None,
                       help="evaluate after epoch 1, every this many epochs and the last (paper: 2)")
    train.add_argument("--bucket-pool", type=int, default=None,
                       help="group each pool of this many shuffled batches by length to cut padding; 0 = plain "
                       "shuffled batches as the original code")
    train.add_argument("--eval-batch-size", type=int, default=64, help="series per evaluation batch")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    train.add_argument("--threads", type=int, default=None,
                       help="torch CPU threads per run (default: torch's choice with one job, else the cores divided "
                       "among the jobs)")
    train.add_argument("--jobs", type=int, default=None,
                       help="runs trained at once in worker processes, the CPU cores shared out among them (default on "
                       "CPU: one single-thread worker per run, at most one more than the cores; 1 on GPU)")

    output = parser.add_argument_group("output and resumption")
    output.add_argument("--out", default="runs/timeseries", help="output folder (runs, summary JSON/CSV, plots)")
    output.add_argument("--fresh", action="store_true", help="discard earlier results and checkpoints of these runs")
    output.add_argument("--checkpoint-every", type=int, default=10, help="epochs between resumable checkpoints")
    output.add_argument("--keep-checkpoints", action="store_true", help="keep checkpoint.pt after a run finishes")
    output.add_argument("--no-progress", action="store_true", help="hide progress bars")
    output.add_argument("--time-limit", type=float, default=None,
                        help="minutes; after the epoch that passes it, checkpoint and stop (exit code 3); rerun to resume")
    return parser


def _models(names: list[str]) -> list[str]:
    if names == ["all"]:
        return list(PAPER_MODELS)
    models = []
    for name in names:
        model = canonical_model(name)
        if model not in PAPER_MODELS and model not in core.list_attentions():  # only then import every mechanism
            raise SystemExit(
                f"error: unknown model {name!r}; expected one of {', '.join(PAPER_MODELS)} or a registry name "
                f"({', '.join(core.list_attentions())})"
            )
        models.append(model)
    return models


def _overrides(args: argparse.Namespace) -> dict:
    keys = ("d_model", "num_heads", "ffn_dim", "num_layers", "dropout", "low_rank", "rank_multi", "eta", "input_norm",
            "original_padding", "epochs", "batch_size", "lr", "optimizer", "weight_decay", "clip_norm", "eval_every",
            "bucket_pool")
    return {key: getattr(args, key) for key in keys}


def plan_jobs(num_runs: int, device: torch.device, jobs: int | None, threads: int | None) -> tuple[int, int | None]:
    """``(worker processes, threads per run)``: ``jobs`` workers with the CPU cores shared out among them unless
    ``threads`` is given. Default on CPU: one worker per run, at most ``cores + 1`` (single-thread workers use small
    matrix products better than one run on several threads, and one spare worker balances e.g. three runs on two
    cores); on GPU one run at a time."""
    cores = os.cpu_count() or 1
    if jobs is None:
        jobs = 1 if device.type != "cpu" else max(1, min(num_runs, cores + 1))
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if threads is None and device.type == "cpu" and jobs > 1:
        threads = max(1, cores // jobs)
    return min(jobs, max(num_runs, 1)), threads


def _train_in_worker(task: dict) -> dict:
    """One run in a worker process (forked from the fork server, which never ran a torch operation: its own torch
    threads; the loaded data arrive pickled, so workers neither import sktime nor parse the files again)."""
    if task["threads"]:
        torch.set_num_threads(task["threads"])
    flush_denormals(torch.device(task["device"]))
    return train_run(task["config"], task["data"], task["model"], task["seed"], task["run_dir"],
                     torch.device(task["device"]), **task["options"])


def _worker_modules() -> list[str]:
    """What the fork server imports before it forks the workers: this module (torch and the training code) and every
    attention mechanism, which building a model through the registry imports (about 3.5 CPU-s, paid once instead of
    in every worker)."""
    import core.attention

    return ["timeseries.cli"] + [f"core.attention.{m.name}" for m in pkgutil.iter_modules(core.attention.__path__)]


def _worker_pool(jobs: int) -> ProcessPoolExecutor:
    """A pool of ``jobs`` workers, each forked from a fork server when its first run is submitted.

    The fork server starts now and imports :func:`_worker_modules` while the data are loaded. It is a fresh
    interpreter that never runs a torch operation, so no worker inherits OpenMP thread pools (why plain fork is not
    used), and no worker imports torch again (spawned workers each spent about 3.5 CPU-s on imports). A forked worker
    also exits without tearing its interpreter down. Where there is no fork server (Windows), the workers are spawned.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_worker_modules())
    multiprocessing.forkserver.ensure_running()  # returns at once; starting a worker waits for the imports
    return ProcessPoolExecutor(max_workers=jobs, mp_context=context)


def run(args: argparse.Namespace) -> list[dict]:
    """Every (data set, model, seed) run of ``args``, ``--jobs`` at a time; returns the summary rows."""
    datasets = list(PAPER_DATASETS) if args.dataset == ["all"] else args.dataset
    models = _models(args.model)
    device = select_device(args.device)
    jobs, threads = plan_jobs(len(models) * len(args.seeds), device, args.jobs, args.threads)
    if threads:
        torch.set_num_threads(threads)
    flush_denormals(device)  # process-wide, like the thread count: run() is the command's body
    for dataset in datasets:  # fail before any training (or worker) if a data set is missing
        find_dataset_files(dataset, args.data_dir)
    with _worker_pool(jobs) if jobs > 1 else contextlib.nullcontext() as pool:
        return _run_datasets(args, datasets, models, device, jobs, threads, pool)


def _run_datasets(args, datasets: list[str], models: list[str], device: torch.device, jobs: int, threads: int | None,
                  pool: ProcessPoolExecutor | None) -> list[dict]:
    """The runs of each data set in turn (on ``pool`` if given); writes the summary after each data set."""
    out = Path(args.out)
    results = []
    started = time.perf_counter()
    deadline = None if args.time_limit is None else time.monotonic() + 60.0 * args.time_limit
    for dataset in datasets:
        data = load_uea(dataset, args.data_dir, args.protocol, args.val_ratio, args.split_seed)
        print(f"{dataset}: {data.summary()}" + (f"; {jobs} runs at a time, {threads} thread(s) each" if jobs > 1 else ""),
              file=sys.stderr)
        tasks = []
        for model in models:
            config = resolve_config(dataset, model, args.config, _overrides(args))
            for seed in args.seeds:
                run_dir = out / dataset / args.protocol / model / f"seed{seed}"
                options = dict(resume=not args.fresh, checkpoint_every=args.checkpoint_every,
                               keep_checkpoint=args.keep_checkpoints, eval_batch_size=args.eval_batch_size,
                               progress=not args.no_progress, deadline=deadline)
                tasks.append({"data": data, "config": config, "model": model, "seed": seed, "run_dir": str(run_dir),
                              "device": str(device), "threads": threads, "options": options})
        if jobs == 1:
            finished = [train_run(t["config"], data, t["model"], t["seed"], t["run_dir"], device, **t["options"])
                        for t in tasks]
        else:
            for position, task in enumerate(tasks):
                task["options"]["progress_position"] = position % jobs
            import_plotting()  # fits in the wait of the first fork for the fork server's imports
            finished = list(pool.map(_train_in_worker, tasks))  # the deadline is time.monotonic(), shared by all
        results.extend(finished)
        curves = {f"{t['model']} seed {t['seed']}": read_metrics(t["run_dir"]) for t in tasks}
        plot_learning_curves(curves, out / dataset / f"curves_{args.protocol}.png", title=f"{dataset} ({args.protocol})")
        rows = summarise(results)
        write_json({"rows": rows, "runs": results, "wall_seconds": time.perf_counter() - started,
                    "device": str(device), "threads": torch.get_num_threads(), "jobs": jobs},
                   out / "summary.json")
        write_summary_csv(rows, out / "summary.csv")
    return rows


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the interpreter's last collections at exit walk every object of torch, sktime and matplotlib (about 0.6 s); frozen
    # at exit, they are skipped (the process ends: their cycles need no collecting)
    atexit.register(gc.freeze)
    started = time.perf_counter()
    try:
        rows = run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except TimeLimitReached as stop:
        print(f"time limit: {stop}", file=sys.stderr)
        return 3
    print(format_table(rows))
    print(f"\n{len(rows)} result rows in {time.perf_counter() - started:.0f} s; JSON, CSV and plots under {args.out}/")
    return 0
