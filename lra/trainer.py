"""The LRA training loop of the PyTorch LRA code (Nystromformer/Skyformer/Primal-Attention, Chen et al., NeurIPS
2023): AdamW, linear one-cycle schedule, gradient value clipping, evaluation every k steps on dev batches,
best-dev checkpoint evaluated on the test set, AMP only on CUDA, and the KSVD term ``eta * core.ksvd_loss``.

Under DDP (``core.engine.distributed``) each rank trains on its own shard of every epoch, gradients are averaged by
DistributedDataParallel, and evaluation sums over the ranks' shards, so every rank sees the same metrics.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset

import core
from core.engine import DistributedContext, make_loader, reduce_sum, wrap_model
from core.losses import clear_ksvd
from lra.data.arrays import Collate, LRADataset
from lra.data.synthetic import ADDING_TOLERANCE


@dataclass
class StepResult:
    loss: float
    task_loss: float
    ksvd: float


def training_batches(
    dataset: LRADataset,
    batch_size: int,
    seed: int,
    collate: Collate,
    consumed: int = 0,
    context: DistributedContext | None = None,
    workers: int = 0,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless training batches: epoch e is ``core.engine.make_loader(..., epoch=e)``, shuffled from (seed, e),
    one shard per rank under DDP, the last partial batch dropped.

    Starting after ``consumed`` batches makes resumption exact without saving sampler state.

    Args:
        batch_size (int): examples per rank and step.
        consumed (int): batches this rank has already trained on.
    """

    def epoch_loader(epoch: int) -> DataLoader:
        return make_loader(dataset, batch_size, shuffle=True, seed=seed, epoch=epoch, context=context,
                           drop_last=True, collate_fn=collate, num_workers=workers)  # fmt: skip

    per_epoch = len(epoch_loader(0))
    if per_epoch == 0:
        ranks = context.world_size if context is not None else 1
        raise ValueError(
            f"the training split has {len(dataset)} examples, fewer than one batch of {batch_size} on each of "
            f"{ranks} process(es); lower --batch-size"
        )
    epoch, position = divmod(consumed, per_epoch)
    while True:
        yield from itertools.islice(epoch_loader(epoch), position, None)
        epoch, position = epoch + 1, 0


def one_cycle(optimizer: torch.optim.Optimizer, lr: float, steps: int, warmup: int):
    """Linear one-cycle schedule with ``pct_start = warmup / steps`` (a constant rate for runs under 8 steps)."""
    if steps < 8:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    pct = min(max(warmup / steps, 2.0 / steps), 1.0 - 2.0 / steps)
    return torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=steps, pct_start=pct, anneal_strategy="linear"
    )


def move(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


class Trainer:
    """One model, its optimiser and schedule, and the loops over the splits.

    Args:
        model (nn.Module): an :class:`lra.model.LRAModel`.
        eta (float): weight of the KSVD loss (0 = not added; the recorded terms are still consumed).
        regression (bool): MSE loss and the Adding accuracy (|error| < 0.04) instead of cross-entropy.
        train_cfg (dict): the ``train`` section of the task config.
        device (torch.device): where to run; AMP (float16 autocast + GradScaler) only on CUDA when ``amp``.
        context (DistributedContext, optional): with several ranks the model is wrapped in DDP (``self.model``);
            ``self.module`` is always the bare model (checkpoints, evaluation, KSVD terms).
    """

    def __init__(
        self,
        model: nn.Module,
        eta: float,
        regression: bool,
        train_cfg: dict,
        device: torch.device,
        amp: bool = True,
        context: DistributedContext | None = None,
    ) -> None:
        self.context = context or DistributedContext()
        self.module = model.to(device)
        self.model = wrap_model(self.module, self.context)
        self.eta = eta
        self.regression = regression
        self.cfg = train_cfg
        self.device = device
        self.amp = amp and device.type == "cuda"
        self.optimizer = torch.optim.AdamW(
            model.parameters(), lr=train_cfg["lr"], betas=(0.9, 0.999), eps=1e-6, weight_decay=train_cfg["weight_decay"]
        )
        self.scheduler = one_cycle(self.optimizer, train_cfg["lr"], train_cfg["steps"], train_cfg["warmup"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.amp else nullcontext()

    def task_loss(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.regression:
            return F.mse_loss(outputs.float().squeeze(-1), labels.float())
        return F.cross_entropy(outputs.float(), labels)

    def train_step(self, batch: dict[str, torch.Tensor]) -> StepResult:
        """One optimisation step on a batch; returns the losses."""
        self.model.train()
        batch = move(batch, self.device)
        with self.autocast():
            outputs = self.model(batch)
        task_loss = self.task_loss(outputs, batch["labels"])
        ksvd = core.ksvd_loss(self.module).float()  # always consumed, so recorded terms never pile up
        loss = task_loss + self.eta * ksvd if self.eta > 0 else task_loss
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss.item()} (task {task_loss.item()}, ksvd {ksvd.item()}); lower --lr"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        if self.cfg.get("grad_clip_value"):
            nn.utils.clip_grad_value_(self.module.parameters(), self.cfg["grad_clip_value"])
        if self.cfg.get("grad_clip_norm"):
            nn.utils.clip_grad_norm_(self.module.parameters(), self.cfg["grad_clip_norm"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return StepResult(float(loss.detach()), float(task_loss.detach()), float(ksvd.detach()))

    @torch.no_grad()
    def evaluate(self, loader: DataLoader, max_batches: int = 0) -> dict[str, float]:
        """Loss and accuracy (plus MSE for regression) over ``max_batches`` batches (0 = all), per example.

        Under DDP each rank passes its own shard (:func:`shard`); the sums are added over the ranks.
        """
        self.module.eval()
        total_loss, correct, count = 0.0, 0.0, 0
        for index, batch in enumerate(loader):
            if max_batches and index >= max_batches:
                break
            batch = move(batch, self.device)
            with self.autocast():
                outputs = self.module(batch)
            labels = batch["labels"]
            n = labels.shape[0]
            total_loss += float(self.task_loss(outputs, labels)) * n
            if self.regression:
                correct += float(((outputs.float().squeeze(-1) - labels).abs() < ADDING_TOLERANCE).sum())
            else:
                correct += float((outputs.argmax(dim=-1) == labels).sum())
            count += n
        clear_ksvd(self.module)
        if self.context.enabled:
            total_loss, correct, count = (reduce_sum(x) for x in (total_loss, correct, count))
            count = round(count)
        if count == 0:
            raise ValueError("evaluation saw no examples; the split is empty")
        metrics = {"loss": total_loss / count, "accuracy": correct / count, "examples": count}
        if self.regression:
            metrics["mse"] = metrics["loss"]
        return metrics

    def state(self) -> dict:
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state(self, state: dict) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def shard(dataset: LRADataset, context: DistributedContext | None) -> LRADataset | Subset:
    """Rank r's evaluation examples r, r + W, r + 2W, ...: every example once over the ranks, none repeated."""
    if context is None or not context.enabled:
        return dataset
    return Subset(dataset, range(context.rank, len(dataset), context.world_size))


def loader(dataset: LRADataset | Subset, batch_size: int, collate: Collate, workers: int = 0) -> DataLoader:
    """An evaluation DataLoader in file order."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=workers)


def baseline_metrics(train_labels: np.ndarray, test_labels: np.ndarray, regression: bool) -> dict[str, float]:
    """The trivial predictor on the test set: majority training class, or the training mean for regression."""
    if regression:
        mean = float(np.mean(train_labels))
        errors = np.asarray(test_labels, dtype=np.float64) - mean
        return {
            "trivial_mse": float(np.mean(errors**2)),
            "trivial_accuracy": float(np.mean(np.abs(errors) < ADDING_TOLERANCE)),
        }
    majority = int(np.bincount(np.asarray(train_labels)).argmax())
    return {"majority_class": majority, "majority_accuracy": float(np.mean(np.asarray(test_labels) == majority))}


def is_better(metrics: dict[str, float], best: float | None, regression: bool) -> tuple[bool, float]:
    """Whether dev ``metrics`` beat ``best`` (accuracy, or negative MSE for regression)."""
    score = -metrics["mse"] if regression else metrics["accuracy"]
    return (best is None or score > best or (math.isnan(best) and not math.isnan(score))), score
