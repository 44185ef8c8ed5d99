"""One training epoch and one evaluation pass of DeiT / Primal.+DeiT (Chen et al., NeurIPS 2023, section 5.4).

The training loss is timm's (soft-target or label-smoothing) cross-entropy plus ``eta`` times the KSVD loss that
``core.ksvd_loss`` gathers from the primal blocks; AMP (float16 autocast with timm's ``NativeScaler``) is used on
CUDA only. Evaluation reports top-1/top-5 accuracy, summed over processes.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from timm.utils import accuracy
from torch import nn
from torch.utils.data import Sampler
from tqdm import tqdm

import core
from core.losses import clear_ksvd


class SkipFirst(Sampler):
    """Wrap a sampler and drop its first ``skip`` indices (resuming in the middle of an epoch).

    ``set_epoch`` is passed through, so the order stays the one the epoch started with.
    """

    def __init__(self, sampler: Sampler, skip: int = 0) -> None:
        self.sampler = sampler
        self.skip = skip

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[int]:
        for position, index in enumerate(self.sampler):
            if position >= self.skip:
                yield index

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def peak_memory_gb(device: torch.device) -> float:
    """Peak allocated CUDA memory since the last reset, or the process's peak resident memory on CPU, in GB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1e9


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(tensor)
    return tensor.tolist()


def shared_time(device: torch.device) -> float:
    """``time.time()`` of rank 0 on every process, so time-based decisions (budget, schedule) agree across ranks."""
    now = time.time()
    if not (dist.is_available() and dist.is_initialized()):
        return now
    tensor = torch.tensor([now], dtype=torch.float64, device=device if dist.get_backend() == "nccl" else "cpu")
    dist.broadcast(tensor, src=0)
    return float(tensor.item())


@dataclass
class TrainState:
    """Where training stands: ``epoch``, batches done in it, optimizer ``step`` count."""

    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    scheduler,
    criterion: nn.Module,
    state: TrainState,
    device: torch.device,
    *,
    eta: float = 0.05,
    mixup: Callable | None = None,
    scaler=None,
    clip_grad: float | None = None,
    ema=None,
    max_batches: int = 0,
    deadline: float | None = None,
    on_step: Callable[[TrainState], None] | None = None,
    schedule_position: Callable[[TrainState, float], int] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    show_progress: bool = True,
) -> dict[str, float]:
    """Train until the loader is exhausted, ``max_batches`` is reached or the ``deadline`` (time.time()) passes.

    Args:
        model: classifier mapping ``(B, C, H, W)`` to logits ``(B, K)`` (possibly DDP-wrapped).
        loader: yields ``(images (B, C, H, W), labels (B,))``; its sampler may already skip done batches.
        optimizer, scheduler: timm optimizer and scheduler (``step_update`` after every update).
        criterion: task loss on logits and (soft) targets.
        state: updated in place (``batch_in_epoch``, ``step``).
        device: where the batch goes.
        eta: weight of ``core.ksvd_loss(model)``.
        mixup: timm ``Mixup`` or None.
        scaler: timm ``NativeScaler`` when training in float16, else None.
        clip_grad: gradient-norm clipping value.
        ema: timm ``ModelEmaV3`` or None.
        max_batches: stop the epoch after this many batches in total (0 = no limit).
        deadline: wall-clock time (rank 0's ``time.time()``) after which to stop.
        on_step: called after every update (e.g. periodic checkpoints).
        schedule_position: maps the state and the shared time to the scheduler's update count (default:
            ``state.step``).
        stop_requested: checked after every update; True ends the epoch at once (preemption).
        show_progress: tqdm bar.

    Returns:
        Averages of ``loss``, ``task_loss``, ``ksvd_loss``; ``lr``; ``images``, ``images_per_s``,
        ``seconds_per_1k_steps``, ``peak_memory_gb``, ``stopped_early`` (1.0 when the deadline hit) and
        ``interrupted`` (1.0 when ``stop_requested`` said so).
    """
    model.train()
    reset_peak_memory(device)
    use_amp = scaler is not None
    totals = {"loss": 0.0, "task_loss": 0.0, "ksvd_loss": 0.0}
    batches = images_seen = 0
    stopped_early = interrupted = False
    start = time.perf_counter()
    total = len(loader) if hasattr(loader, "__len__") else None
    if max_batches:
        total = max(0, min(total or max_batches, max_batches - state.batch_in_epoch))
    progress = tqdm(loader, total=total, desc=f"epoch {state.epoch}", disable=not show_progress, leave=False)
    for images, targets in progress:
        if max_batches and state.batch_in_epoch >= max_batches:
            break
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        if mixup is not None:
            images, targets = mixup(images, targets)
        with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(images)
            task_loss = criterion(logits, targets)
        ksvd = core.ksvd_loss(model).float()
        loss = task_loss.float() + eta * ksvd
        if not math.isfinite(loss.item()):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {state.step} (task {task_loss.item()}, KSVD {ksvd.item()}); "
                "lower --lr or --eta, or set --clip-grad"
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler(loss, optimizer, clip_grad=clip_grad, parameters=model.parameters())
        else:
            loss.backward()
            if clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
        state.step += 1
        state.batch_in_epoch += 1
        if ema is not None:
            ema.update(getattr(model, "module", model), step=state.step)  # the unwrapped model under DDP
        now = shared_time(device) if deadline is not None or schedule_position is not None else None
        scheduler.step_update(num_updates=schedule_position(state, now) if schedule_position else state.step)
        batches += 1
        images_seen += images.shape[0]
        totals["loss"] += loss.item()
        totals["task_loss"] += task_loss.item()
        totals["ksvd_loss"] += ksvd.item()
        progress.set_postfix(loss=f"{totals['loss'] / batches:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if on_step is not None:
            on_step(state)
        if stop_requested is not None and stop_requested():
            interrupted = True
            break
        if deadline is not None and now >= deadline:
            stopped_early = True
            break
    progress.close()
    elapsed = time.perf_counter() - start
    metrics = {key: value / max(batches, 1) for key, value in totals.items()}
    metrics.update(
        lr=optimizer.param_groups[0]["lr"],
        batches=batches,
        images=images_seen,
        images_per_s=images_seen / elapsed if elapsed > 0 else 0.0,
        seconds_per_1k_steps=1000 * elapsed / max(batches, 1),
        peak_memory_gb=peak_memory_gb(device),
        stopped_early=float(stopped_early),
        interrupted=float(interrupted),
    )
    return metrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    device: torch.device,
    *,
    amp: bool = False,
    max_batches: int = 0,
    show_progress: bool = True,
) -> dict[str, float]:
    """Top-1/top-5 accuracy (%) and cross-entropy on a labelled loader, summed over processes.

    Args:
        model: classifier ``(B, C, H, W) -> (B, K)``.
        loader: yields ``(images, labels)``.
        device: where the batch goes.
        amp: float16 autocast (CUDA only).
        max_batches: at most this many batches (0 = all).
        show_progress: tqdm bar.

    Returns:
        ``top1``, ``top5`` (top-k with k = min(5, K)), ``loss``, ``images`` and ``images_per_s``.
    """
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    correct1 = correct5 = loss_sum = count = 0.0
    start = time.perf_counter()
    total = min(len(loader), max_batches) if max_batches else len(loader)
    for index, (images, targets) in enumerate(tqdm(loader, total=total, desc="eval", disable=not show_progress, leave=False)):
        if max_batches and index >= max_batches:
            break
        images = images.to(device, non_blocking=True)
        targets = targets.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
            logits = model(images)
        logits = logits.float()
        top1, top5 = accuracy(logits, targets, topk=(1, min(5, logits.shape[-1])))
        batch = images.shape[0]
        correct1 += top1.item() * batch / 100
        correct5 += top5.item() * batch / 100
        loss_sum += criterion(logits, targets).item()
        count += batch
    clear_ksvd(model)  # evaluation passes must not feed the next training step's KSVD loss
    elapsed = time.perf_counter() - start
    correct1, correct5, loss_sum, count = _sum_over_processes([correct1, correct5, loss_sum, count], device)
    if count == 0:
        raise ValueError("the evaluation loader produced no images")
    return {
        "top1": 100 * correct1 / count,
        "top5": 100 * correct5 / count,
        "loss": loss_sum / count,
        "images": int(count),
        "images_per_s": count / elapsed if elapsed > 0 else 0.0,
    }
