"""``python -m lra train``: train one task with one attention, resumably, and evaluate the best dev checkpoint on test.

A run folder holds ``train.log`` (human), ``metrics.jsonl``/``metrics.csv`` (every log and eval row),
``checkpoints/last.pt`` (resume) and ``checkpoints/best.pt`` (best dev), ``result.json`` and ``curves.png``.

Several processes (``torchrun --nproc_per_node P -m lra train ...`` or P SLURM tasks) train with DDP through
``core.engine.distributed``: the configured batch is the global one, split evenly over the ranks as the
reference's ``nn.DataParallel`` splits it; rank 0 alone logs and writes files.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.engine import (
    DistributedContext,
    MetricLogger,
    barrier,
    init_distributed,
    load_checkpoint,
    reduce_mean,
    save_checkpoint,
    seed_everything,
    select_device,
    write_json,
)
from core.engine.memory import PeakMemory
from lra.config import model_sequence_length
from lra.data.arrays import Collate, DataError, LRADataset, read_split
from lra.model import build_model
from lra.plots import plot_curves
from lra.train_args import add_arguments, attention_options, resolve_config
from lra.trainer import Trainer, baseline_metrics, is_better, loader, shard, training_batches

LOG = logging.getLogger("lra.train")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a task with an attention mechanism and evaluate on test",
        description="Train the shared LRA model on a prepared task; the best dev checkpoint is evaluated on the "
        "test set. Re-running the same command resumes from the run folder's last checkpoint.",
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def load_data(folder: Path, config: dict, reference_pixel_mask: bool) -> dict[str, LRADataset]:
    """The three splits, checked against the config (kind and vocabulary)."""
    datasets = {}
    for name in ("train", "dev", "test"):
        split = read_split(folder, name)
        expected = config["kind"]
        if split.kind != expected:
            raise DataError(
                f"{folder}/{name} holds {split.kind!r} data but task {config['task']!r} expects {expected!r}; "
                "check --data and --task"
            )
        if split.kind == "pixels":
            top = int(np.max(split.arrays["pixels"])) + (0 if reference_pixel_mask else 1)
        else:
            ids = [split.arrays[k] for k in ("input_ids", "input_ids_0", "input_ids_1") if k in split.arrays]
            top = max((int(np.max(a)) for a in ids), default=0)
        if split.kind != "adding" and top >= config["vocab_size"]:
            raise DataError(
                f"{folder}/{name}: token id {top} does not fit the vocabulary of {config['vocab_size']}; "
                "raise it with --set vocab_size=N"
            )
        datasets[name] = LRADataset(split, reference_pixel_mask)
    return datasets


def labels_of(dataset: LRADataset) -> np.ndarray:
    arrays = dataset.split.arrays
    return np.asarray(arrays["targets"] if "targets" in arrays else arrays["labels"])


def setup_logging(run_dir: Path) -> None:
    LOG.setLevel(logging.INFO)
    LOG.handlers.clear()
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    LOG.addHandler(handler)
    LOG.propagate = False


def say(message: str) -> None:
    """Log and print on rank 0 (every other rank stays quiet)."""
    if LOG.handlers:
        LOG.info(message)
        tqdm.write(message)


def model_weights(path: Path, device: torch.device) -> dict:
    """The model state dict of a ``best.pt`` or ``last.pt`` written by this command."""
    checkpoint = load_checkpoint(path, map_location=device)
    if "model" in checkpoint:
        return checkpoint["model"]
    if "trainer" in checkpoint:
        return checkpoint["trainer"]["model"]
    raise ValueError(f"{path} holds no model weights (expected best.pt or last.pt of `python -m lra train`)")


def target_reached(dev: dict[str, float], target: float | None, regression: bool) -> bool:
    """Whether dev metrics meet ``--stop-at-dev`` (MSE at most the target for regression, else accuracy at least)."""
    if target is None:
        return False
    return dev["mse"] <= target if regression else dev["accuracy"] >= target


def per_rank_batch(batch_size: int, context: DistributedContext) -> int:
    if batch_size % context.world_size:
        raise ValueError(
            f"the global batch of {batch_size} does not split evenly over {context.world_size} processes; "
            f"choose a --batch-size divisible by {context.world_size}"
        )
    return batch_size // context.world_size


def run(args: argparse.Namespace) -> dict:
    """Train and test as ``args`` say; returns the content of ``result.json`` (on every rank)."""
    return fit(args)[0]


def fit(args: argparse.Namespace) -> tuple[dict, Trainer]:
    """:func:`run`, also returning the trainer (its model holds the weights that were tested)."""
    config = resolve_config(args)
    extra = attention_options(args.attention_option)
    data_dir = args.data or Path("data/lra") / args.task
    run_dir = args.run_dir or Path("runs/lra") / f"{args.task}-{args.attention}-seed{args.seed}"
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    context = init_distributed(device)
    if device.type == "cuda" and context.enabled:
        device = torch.device("cuda", context.local_rank)
    main = context.is_main
    run_dir.mkdir(parents=True, exist_ok=True)
    if main:
        setup_logging(run_dir)
    else:
        LOG.handlers.clear()
    seed_everything(args.seed)
    datasets = load_data(data_dir, config, args.reference_pixel_mask)
    max_length = int(datasets["train"].split.meta.get("max_length") or config["max_length"])
    seq_len = model_sequence_length(max_length)
    if args.model_length is not None:
        if args.model_length < max_length:
            raise ValueError(
                f"--model-length {args.model_length} is shorter than the data's {max_length} tokens; pass at least "
                f"{max_length}"
            )
        seq_len = args.model_length
    model, eta, schedule = build_model(config, args.attention, seq_len, extra)
    regression = config["kind"] == "adding"
    train_cfg = config["train"]
    batch_size = per_rank_batch(train_cfg["batch_size"], context)
    trainer = Trainer(model, eta, regression, train_cfg, device, amp=not args.no_amp, context=context)
    collate = Collate(pad_to=seq_len, trim=args.trim_padding)

    state = {"step": 0, "best": None, "best_step": None, "elapsed": 0.0}
    metrics = MetricLogger(run_dir, enabled=main)
    last_path, best_path = run_dir / "checkpoints" / "last.pt", run_dir / "checkpoints" / "best.pt"
    if last_path.is_file() and not args.no_resume:
        checkpoint = load_checkpoint(last_path, map_location=device)
        if checkpoint.get("task") != args.task or checkpoint.get("attention") != args.attention:
            raise ValueError(
                f"{last_path} belongs to {checkpoint.get('task')}/{checkpoint.get('attention')}, not "
                f"{args.task}/{args.attention}; choose another --run-dir or pass --no-resume"
            )
        trainer.load_state(checkpoint["trainer"])
        state = checkpoint["state"]
        torch.set_rng_state(checkpoint["rng"].cpu())
        if device.type == "cuda" and checkpoint.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(checkpoint["cuda_rng"].cpu(), device)
        metrics.load_existing()
        metrics.truncate(checkpoint["metric_rows"])
        say(f"resumed from {last_path} at step {state['step']}")
    else:
        if args.no_resume and metrics.jsonl_path.exists():
            metrics.truncate(0)
        if args.init_from is not None:
            trainer.module.load_state_dict(model_weights(args.init_from, device))
            say(f"weights from {args.init_from}")
    if context.enabled:
        # every rank its own dropout stream, reproducible from (seed, rank, step) after a resume
        torch.manual_seed(args.seed + 1_000_003 * (context.rank + 1) + state["step"])

    parameters = sum(p.numel() for p in model.parameters())
    say(
        f"{args.task} | attention {args.attention} -> layers {schedule} | eta {eta} | {parameters} parameters | "
        f"seq_len {seq_len} | {len(datasets['train'])}/{len(datasets['dev'])}/{len(datasets['test'])} examples | {device}"
        + (f" | DDP {context.world_size} x {batch_size} ({context.backend})" if context.enabled else "")
    )
    train_loader = training_batches(datasets["train"], batch_size, args.seed, collate, state["step"], context, args.workers)
    dev_loader = loader(shard(datasets["dev"], context), batch_size, collate, args.workers)

    def checkpoint_last() -> None:
        save_checkpoint(
            {
                "task": args.task,
                "attention": args.attention,
                "trainer": trainer.state(),
                "state": state,
                "rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                "metric_rows": len(metrics.rows),
                "config": config,
            },
            last_path,
        )

    steps, stopped_early = train_cfg["steps"], False
    meter = PeakMemory(device)
    meter.start()
    started = time.time() - state["elapsed"]
    progress = tqdm(total=steps, initial=state["step"], desc=f"{args.task}/{args.attention}", unit="step", disable=not main)
    window = []
    for batch in train_loader:
        if state["step"] >= steps:
            break
        result = trainer.train_step(batch)
        state["step"] += 1
        window.append(result)
        progress.update(1)
        progress.set_postfix(loss=f"{result.task_loss:.4f}")
        if state["step"] % args.log_every == 0 or state["step"] == steps:
            metrics.log(
                kind="train",
                step=state["step"],
                loss=reduce_mean(np.mean([r.loss for r in window])),
                task_loss=reduce_mean(np.mean([r.task_loss for r in window])),
                ksvd=reduce_mean(np.mean([r.ksvd for r in window])),
                lr=trainer.scheduler.get_last_lr()[0],
                seconds=time.time() - started,
            )
            window = []
        out_of_time = args.max_minutes is not None and time.time() - started > 60 * args.max_minutes
        if context.enabled and args.max_minutes is not None:
            out_of_time = reduce_mean(float(out_of_time)) > 0  # all ranks stop at the same step
        reached = False
        if state["step"] % train_cfg["eval_every"] == 0 or state["step"] == steps or out_of_time:
            dev = trainer.evaluate(dev_loader, train_cfg["eval_batches"])
            reached = target_reached(dev, args.stop_at_dev, regression)
            better, score = is_better(dev, state["best"], regression)
            eligible = state["step"] > train_cfg["best_after_fraction"] * steps
            if better and eligible:
                state["best"], state["best_step"] = score, state["step"]
                if main:
                    save_checkpoint({"model": trainer.module.state_dict(), "step": state["step"], "dev": dev}, best_path)
            metrics.log(
                kind="dev",
                step=state["step"],
                **{k: v for k, v in dev.items() if k != "examples"},
                seconds=time.time() - started,
            )
            say(
                f"step {state['step']}: dev loss {dev['loss']:.4f} accuracy {dev['accuracy']:.4f}"
                + (" (best)" if better and eligible else "")
            )
            state["elapsed"] = time.time() - started
            if main:
                checkpoint_last()
        if out_of_time or reached:
            stopped_early = True
            why = f"--max-minutes {args.max_minutes}" if out_of_time else f"--stop-at-dev {args.stop_at_dev}"
            say(f"stopping at step {state['step']}: {why} reached")
            break
    progress.close()
    train_seconds = time.time() - started
    peak = meter.peak_bytes()

    test_loader = loader(shard(datasets["test"], context), batch_size, collate, args.workers)
    test_from = "final"
    barrier()  # rank 0 has written best.pt
    if state["best_step"] is not None and best_path.is_file():
        trainer.module.load_state_dict(load_checkpoint(best_path, map_location=device)["model"])
        test_from = f"best dev checkpoint (step {state['best_step']})"
    test = trainer.evaluate(test_loader)
    result = {
        "task": args.task,
        "attention": args.attention,
        "layers": schedule,
        "eta": eta,
        "seed": args.seed,
        "parameters": parameters,
        "seq_len": seq_len,
        "steps_done": state["step"],
        "steps_planned": steps,
        "stopped_early": stopped_early,
        "best_dev": state["best"],
        "best_step": state["best_step"],
        "test": test,
        "test_from": test_from,
        **baseline_metrics(labels_of(datasets["train"]), labels_of(datasets["test"]), regression),
        "train_seconds": round(train_seconds, 2),
        "peak_memory_mb": round(peak / 2**20, 1),
        "memory_method": meter.method,
        "device": str(device),
        "processes": context.world_size,
        "amp": trainer.amp,
        "config": config,
        "attention_options": extra,
        "data": str(data_dir),
        "init_from": str(args.init_from) if args.init_from is not None else None,
    }
    if main:
        write_json(result, run_dir / "result.json")
        plot_curves(metrics.rows, run_dir / "curves.png", f"{args.task} / {args.attention}")
    trivial = (
        f"trivial MSE {result['trivial_mse']:.4f}"
        if regression
        else f"majority-class accuracy {result['majority_accuracy']:.4f}"
    )
    extra_metric = f" mse {test['mse']:.4f}" if regression else ""
    say(
        f"test ({test_from}): accuracy {test['accuracy']:.4f}{extra_metric} | {trivial} | "
        f"{train_seconds:.1f} s, peak {result['peak_memory_mb']} MB | {run_dir / 'result.json'}"
    )
    return result, trainer
