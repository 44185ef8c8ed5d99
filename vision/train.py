"""``python -m vision train``: DeiT / Primal.+DeiT training with timm's recipe components and the KSVD loss.

Reproduces the ImageNet-100 / ImageNet-1K runs of Primal-Attention (Chen et al., NeurIPS 2023, Table 7a) and runs
the same recipe on Fashion-MNIST offline. The run folder holds ``log.txt`` (human-readable), ``metrics.jsonl`` and
``metrics.csv`` (one row per epoch), ``result.json`` (final and best accuracy, throughput, memory), ``curves.png``,
``best.pt`` and resumable ``checkpoints/``. Launch several processes with torchrun for DDP.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from timm.data import Mixup
from timm.data.distributed_sampler import RepeatAugSampler
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, NativeScaler
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from core.engine import (
    MetricLogger,
    init_distributed,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    select_device,
    write_json,
)
from vision.config import TrainConfig
from vision.data import build_dataset, build_transform, dataset_info
from vision.engine import SkipFirst, TrainState, evaluate, shared_time, train_one_epoch
from vision.models import attention_name, build_model, primal_block_indices
from vision.plots import plot_training_curves

log = logging.getLogger("vision")


def setup_logging(folder: Path, main: bool) -> None:
    """Human-readable log lines to stderr and ``<folder>/log.txt`` (main process only)."""
    log.handlers.clear()
    log.setLevel(logging.INFO if main else logging.WARNING)
    log.propagate = False
    formatter = logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(folder / "log.txt"))
    for handler in handlers:
        handler.setFormatter(formatter)
        log.addHandler(handler)


def build_criterion(config: TrainConfig, num_classes: int) -> tuple[nn.Module, Mixup | None]:
    """DeiT's loss: soft-target cross-entropy behind Mixup/CutMix (which also smooths labels), else label smoothing."""
    if config.mixup > 0 or config.cutmix > 0:
        if config.batch_size % 2:
            raise ValueError(f"Mixup/CutMix mix each batch with its flipped self and need an even --batch-size, got "
                             f"{config.batch_size}; change it or set --mixup 0 --cutmix 0")
        mixup = Mixup(
            mixup_alpha=config.mixup, cutmix_alpha=config.cutmix, prob=config.mixup_prob,
            switch_prob=config.mixup_switch_prob, mode="batch", label_smoothing=config.smoothing,
            num_classes=num_classes,
        )
        return SoftTargetCrossEntropy(), mixup
    if config.smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=config.smoothing), None
    return nn.CrossEntropyLoss(), None


class StopSignal:
    """SIGTERM or SIGUSR1 (SLURM preemption, torchrun shutdown): finish the current update, checkpoint and exit.

    Every process installs the handlers; under DDP the flag is combined over processes after every update, so all
    ranks stop at the same step. ``restore`` puts the previous handlers back.
    """

    SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGUSR1") if hasattr(signal, name))

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.requested = False
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum, frame) -> None:
        self.requested = True
        log.warning("signal %d received: checkpointing after this update", signum)

    def __call__(self) -> bool:
        if not (dist.is_available() and dist.is_initialized()):
            return self.requested
        flag = torch.tensor([float(self.requested)], device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _checkpoint_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("checkpoint-*.pt"))


def _resume_path(config: TrainConfig, folder: Path) -> Path | None:
    if config.resume in ("", "none"):
        return None
    if config.resume == "auto":
        return latest_checkpoint(folder, "checkpoint-*.pt")
    path = Path(config.resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {path}: no such checkpoint (use 'auto', 'none' or a file)")
    return path


def run(config: TrainConfig) -> dict[str, Any]:
    """Train and evaluate as ``config`` says; returns the content of ``result.json``."""
    if config.threads:
        torch.set_num_threads(config.threads)
    device = select_device(config.device)
    context = init_distributed(device)
    if device.type == "cuda" and context.enabled:
        device = torch.device("cuda", context.local_rank)
    main = context.is_main
    out = Path(config.output_dir)
    setup_logging(out, main)
    seed_everything(config.seed + context.rank)

    train_set = build_dataset(config.dataset, config.data_path, "train")
    info = dataset_info(config.dataset, train_set)
    img_size = config.img_size or info.img_size
    train_set.transform = build_transform(True, img_size, info, config)
    val_set = build_dataset(config.dataset, config.data_path, "val", transform=build_transform(False, img_size, info, config))

    model = build_model(config, info.num_classes, info.in_chans, img_size).to(device)
    primal_blocks = primal_block_indices(model)
    parameters = sum(p.numel() for p in model.parameters())
    log.info("model %s: %.2fM parameters, blocks %s", config.model, parameters / 1e6,
             [attention_name(block.attn) for block in model.blocks])

    if config.repeated_aug and context.enabled:
        train_sampler = RepeatAugSampler(train_set, num_replicas=context.world_size, rank=context.rank, shuffle=True)
    else:
        train_sampler = DistributedSampler(train_set, context.world_size, context.rank, shuffle=True, seed=config.seed)
    if config.dist_eval and context.enabled:
        val_sampler = DistributedSampler(val_set, context.world_size, context.rank, shuffle=False)
    else:
        val_sampler = None
    loader_options = {"num_workers": config.workers, "pin_memory": device.type == "cuda",
                      "persistent_workers": False}
    val_loader = DataLoader(val_set, batch_size=int(1.5 * config.batch_size), sampler=val_sampler, shuffle=False,
                            **loader_options)
    batches_per_epoch = len(train_sampler) // config.batch_size
    if config.max_train_batches:
        batches_per_epoch = min(batches_per_epoch, config.max_train_batches)
    if batches_per_epoch < 1:
        raise ValueError(f"{len(train_sampler)} training images per process give no full batch of {config.batch_size}; "
                         "lower --batch-size")

    if config.warmup_epochs >= config.epochs:
        log.warning("warm-up (%g epochs) is not shorter than training (%d epochs): the learning rate never reaches its "
                    "peak; lower --warmup-epochs", config.warmup_epochs, config.epochs)
    global_batch = config.batch_size * context.world_size
    lr = config.lr or config.lr_base * global_batch / config.lr_base_size
    optimizer = create_optimizer_v2(model, opt=config.opt, lr=lr, weight_decay=config.weight_decay, eps=config.opt_eps,
                                    momentum=config.momentum)
    scheduler, _ = create_scheduler_v2(
        optimizer, sched=config.sched, num_epochs=config.epochs, warmup_epochs=config.warmup_epochs,
        warmup_lr=config.warmup_lr, min_lr=config.min_lr, step_on_epochs=False, updates_per_epoch=batches_per_epoch,
    )
    criterion, mixup = build_criterion(config, info.num_classes)
    use_amp = config.amp and device.type == "cuda"
    scaler = NativeScaler() if use_amp else None
    ema = ModelEmaV3(model, decay=config.model_ema_decay) if config.model_ema else None
    unwrapped = model
    if context.enabled:
        find_unused = config.eta == 0 and bool(primal_blocks)  # Lambda only enters the KSVD loss
        model = DistributedDataParallel(model, device_ids=[context.local_rank] if device.type == "cuda" else None,
                                        find_unused_parameters=find_unused)

    checkpoints = out / "checkpoints"
    metrics = MetricLogger(out, enabled=main)
    state, best, wall_before, cpu_before = TrainState(), {"top1": -1.0, "top5": 0.0, "epoch": -1}, 0.0, 0.0
    resume = _resume_path(config, checkpoints)
    if resume is not None:
        saved = load_checkpoint(resume, map_location=device)
        if "optimizer" not in saved or "state" not in saved:
            raise ValueError(f"{resume} holds weights only (like best.pt), not a training state; resume from "
                             f"{checkpoints}/checkpoint-*.pt, or start from weights with --pretrained-checkpoint")
        try:
            unwrapped.load_state_dict(saved["model"])
        except RuntimeError as error:
            raise ValueError(f"{resume} was written for a different model than --model {config.model}: {error}") from error
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if scaler is not None and saved.get("scaler"):
            scaler.load_state_dict(saved["scaler"])
        if ema is not None and saved.get("ema"):
            ema.module.load_state_dict(saved["ema"])
        state, best = TrainState(**saved["state"]), saved["best"]
        wall_before, cpu_before = saved.get("wall_seconds", 0.0), saved.get("cpu_seconds", 0.0)
        metrics.load_existing()
        metrics.truncate(saved["metric_rows"])
        seed_everything(config.seed + context.rank + 1_000_003 * state.step)
        log.info("resumed from %s at epoch %d, batch %d, step %d", resume, state.epoch, state.batch_in_epoch, state.step)

    start, cpu_start = shared_time(device), time.process_time()
    # the budget covers the whole training, across resumes
    deadline = start + 60 * config.max_minutes - wall_before if config.max_minutes else None

    def save(current: TrainState) -> None:
        if not main:
            return
        save_checkpoint({
            "model": unwrapped.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "ema": ema.module.state_dict() if ema is not None else None,
            "state": vars(current).copy(), "best": best, "metric_rows": len(metrics.rows),
            "wall_seconds": wall_before + time.time() - start,
            "cpu_seconds": cpu_before + time.process_time() - cpu_start, "config": config.to_dict(),
        }, checkpoints / f"checkpoint-{current.step:09d}.pt")
        for old in _checkpoint_paths(checkpoints)[:-max(1, config.keep_checkpoints)]:
            old.unlink()

    total_updates = config.epochs * batches_per_epoch

    def time_position(current: TrainState, now: float) -> int:
        elapsed = wall_before + now - start
        return min(total_updates, int(total_updates * elapsed / (60 * config.max_minutes)))

    schedule_position = time_position if config.time_schedule and config.max_minutes else None
    if config.time_schedule and not config.max_minutes:
        raise ValueError("--time-schedule needs a budget: set --max-minutes")

    def on_step(current: TrainState) -> None:
        if config.save_every_steps and current.step % config.save_every_steps == 0:
            save(current)

    log.info("training %d epochs x %d batches of %d (global %d), lr %.3g, eta %g, primal blocks %s, device %s, amp %s",
             config.epochs, batches_per_epoch, config.batch_size, global_batch, lr, config.eta, primal_blocks,
             device, use_amp)
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    stopped_early = interrupted = False
    stop = StopSignal(device)
    trained_until = start
    try:
        # the deadline is checked after every update; a budget already used up by earlier runs stops at once
        stopped_early = bool(config.max_minutes) and wall_before >= 60 * config.max_minutes
        while state.epoch < config.epochs and not stopped_early:
            train_sampler.set_epoch(state.epoch)
            sampler = SkipFirst(train_sampler, state.batch_in_epoch * config.batch_size)
            loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=True, **loader_options)
            last_train = train_one_epoch(
                model, loader, optimizer, scheduler, criterion, state, device, eta=config.eta, mixup=mixup, scaler=scaler,
                clip_grad=config.clip_grad, ema=ema, max_batches=config.max_train_batches, deadline=deadline,
                on_step=on_step, schedule_position=schedule_position, stop_requested=stop, show_progress=main,
            )
            trained_until = time.time()
            if last_train["interrupted"]:
                interrupted = True
                save(state)
                log.warning("interrupted at epoch %d, batch %d, step %d: checkpoint saved, the same command resumes",
                            state.epoch, state.batch_in_epoch, state.step)
                break
            stopped_early = bool(last_train["stopped_early"])
            epoch, finished = state.epoch, state.batch_in_epoch >= batches_per_epoch or not last_train["batches"]
            if finished:
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            flags = ("stopped_early", "interrupted")
            row: dict[str, Any] = {"epoch": epoch, "step": state.step, "complete": finished,
                                   **{f"train_{k}": v for k, v in last_train.items() if k not in flags}}
            if stopped_early or state.epoch % config.eval_every == 0 or state.epoch == config.epochs:
                last_eval = evaluate(model, val_loader, device, amp=use_amp, max_batches=config.max_eval_batches,
                                     show_progress=main)
                row.update({f"val_{k}": v for k, v in last_eval.items()})
                if ema is not None and config.eval_ema:
                    ema_eval = evaluate(ema.module, val_loader, device, amp=use_amp, max_batches=config.max_eval_batches,
                                        show_progress=main)
                    row.update({f"ema_{k}": v for k, v in ema_eval.items()})
                if last_eval["top1"] > best["top1"]:
                    best = {"top1": last_eval["top1"], "top5": last_eval["top5"], "epoch": epoch}
                    if main:
                        weights = {"model": unwrapped.state_dict(), "config": config.to_dict(), "metrics": last_eval}
                        save_checkpoint(weights, out / "best.pt")
                log.info("epoch %d: loss %.4f (KSVD %.4g), val top-1 %.2f top-5 %.2f, %.0f img/s, %.0f s/1K steps, "
                         "peak %.2f GB", epoch, last_train["loss"], last_train["ksvd_loss"], last_eval["top1"],
                         last_eval["top5"], last_train["images_per_s"], last_train["seconds_per_1k_steps"],
                         last_train["peak_memory_gb"])
            metrics.log(**row)
            save(state)
    finally:
        stop.restore()
    train_seconds = wall_before + trained_until - start  # up to the last update, evaluations between epochs included
    stopped_early = stopped_early and state.epoch < config.epochs
    if not last_eval and not interrupted:
        last_eval = evaluate(model, val_loader, device, amp=use_amp, max_batches=config.max_eval_batches,
                             show_progress=main)
    if stopped_early:
        log.info("time budget of %.1f min used up at epoch %d, batch %d (the budget covers all resumed runs: raise "
                 "--max-minutes to continue)", config.max_minutes, state.epoch, state.batch_in_epoch)

    result = {
        "status": "interrupted" if interrupted else ("time_budget_used" if stopped_early else "complete"),
        "model": config.model, "dataset": config.dataset, "parameters": parameters,
        "attention": config.attention, "primal_blocks": primal_blocks, "epochs_completed": state.epoch,
        "steps": state.step, "images_seen": state.step * global_batch, "final": last_eval, "best": best,
        "train": last_train, "train_seconds": train_seconds, "wall_seconds": wall_before + time.time() - start,
        "cpu_seconds": cpu_before + time.process_time() - cpu_start,  # this process's CPU time (all its threads)
        "world_size": context.world_size,
        "device": str(device), "config": config.to_dict(),
    }
    if main:
        write_json(result, out / "result.json")
        if metrics.rows:
            plot_training_curves(metrics.rows, out / "curves.png", title=f"{config.model} on {config.dataset}")
        log.info("result: %s", out / "result.json")
    return result
