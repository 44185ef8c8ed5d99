"""Training and evaluation of one (data set, model, seed) run, with resumable checkpoints.

Protocols (Chen et al., NeurIPS 2023, section 4.1, following Flowformer/mvts):

- ``paper``: the validation set is the test file and the reported accuracy is the best test accuracy over the
  evaluated epochs (epoch 1, every ``eval_every`` epochs and the last), as the original code reports.
- ``holdout``: the validation set is a stratified split of the training file; the reported accuracy is the test
  accuracy of the weights from the best validation epoch.

The loss is cross-entropy plus ``eta`` times the KSVD loss of the primal layers (``core.ksvd_loss``).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

import core
from core.engine import MetricLogger, load_checkpoint, save_checkpoint, seed_everything, write_json
from core.losses import clear_ksvd
from core.nn import schedule_for_model
from timeseries.batching import evaluation_batches, gather, training_batches
from timeseries.data import SeriesSplit, UEAData
from timeseries.model import UEAClassifier
from timeseries.optim import FusedRAdam, clipped_step

CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
BEST_WEIGHTS = "model_best.pt"  # the selected weights of a finished run


class TimeLimitReached(RuntimeError):
    """Raised after the epoch that crossed the deadline, once its checkpoint is saved; rerunning resumes."""


def build_model(config: dict[str, Any], model_name: str, data: UEAData) -> UEAClassifier:
    """The classifier for ``model_name`` ("primalformer", "primal+trans", "transformer" or a registry name)."""
    schedule = schedule_for_model(model_name, config["num_layers"])
    options = {
        "primal": {
            "low_rank": config["low_rank"],
            "rank_multi": config["rank_multi"],
            "max_seq_len": data.max_len,
            "ksvd_reduction": "sample",
            "original_padding": config["original_padding"],
            "save_projections": True,  # UEA series are short: keeping q and k beats recomputing them
        },
        "softmax": {"attention_dropout": config["dropout"]},
    }
    return UEAClassifier(
        data.num_features,
        len(data.classes),
        data.max_len,
        schedule,
        d_model=config["d_model"],
        num_heads=config["num_heads"],
        ffn_dim=config["ffn_dim"],
        dropout=config["dropout"],
        attention_options={name: options[name] for name in set(schedule) if name in options},
        input_norm=config["input_norm"],
        mask_attention=not config["original_padding"],
    )


def make_optimizer(config: dict[str, Any], parameters) -> torch.optim.Optimizer:
    """RAdam, Adam or AdamW with the configured learning rate and weight decay, on fused kernels where the device
    has them (CPU, CUDA); RAdam runs as :class:`timeseries.optim.FusedRAdam`, equal to ``torch.optim.RAdam``."""
    parameters = list(parameters)
    options = {"lr": config["lr"], "weight_decay": config["weight_decay"]}
    fused = all(p.device.type in ("cpu", "cuda") for p in parameters)
    if config["optimizer"] == "RAdam":
        return FusedRAdam(parameters, **options) if fused else torch.optim.RAdam(parameters, foreach=True, **options)
    cls = getattr(torch.optim, config["optimizer"])
    return cls(parameters, fused=True, **options) if fused else cls(parameters, foreach=True, **options)


def evaluation_epochs(epochs: int, every: int) -> set[int]:
    """1-based epochs after which the model is evaluated: the first, every ``every``-th and the last."""
    if every < 1:
        raise ValueError(f"eval_every must be >= 1, got {every}")
    return {1, epochs} | set(range(every, epochs + 1, every))


@torch.inference_mode()
def evaluate(model: UEAClassifier, split: SeriesSplit, device: torch.device, batch_size: int = 64, trim: bool = True):
    """Mean cross-entropy and accuracy (in %) of ``model`` on ``split``."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for index in evaluation_batches(split.lengths, batch_size):
        x, mask, y = gather(split, index, device, trim)
        logits = model(x, mask)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(dim=1) == y).sum().item()
    clear_ksvd(model)  # evaluation passes must not enter the next training step's KSVD loss
    return loss_sum / len(split), 100.0 * correct / len(split)


def improved(protocol: str, current: tuple[float, float], best: tuple[float, float]) -> bool:
    """Whether ``(accuracy, loss)`` beats the best so far: higher accuracy; in the holdout protocol a tie in
    accuracy is broken by lower loss (the paper protocol keeps the first best epoch, as the original code)."""
    if protocol == "holdout" and current[0] == best[0]:
        return current[1] < best[1]
    return current[0] > best[0]


def run_identity(config: dict[str, Any], dataset: str, model_name: str, seed: int, protocol: str) -> dict[str, Any]:
    """What makes two runs the same run (a resumed run must match it)."""
    settings = {k: v for k, v in config.items() if k != "config_file"}
    return {"dataset": dataset, "model": model_name, "seed": seed, "protocol": protocol, "settings": settings}


def train_run(
    config: dict[str, Any],
    data: UEAData,
    model_name: str,
    seed: int,
    run_dir: str | Path,
    device: torch.device,
    *,
    resume: bool = True,
    checkpoint_every: int = 10,
    keep_checkpoint: bool = False,
    eval_batch_size: int = 64,
    progress: bool = True,
    deadline: float | None = None,
    progress_position: int | None = None,
) -> dict[str, Any]:
    """Train and evaluate one run; write ``result.json``, ``metrics.{jsonl,csv}``, ``log.txt`` and ``model_best.pt``.

    Args:
        config: settings from :func:`timeseries.config.resolve_config`.
        data: the loaded data set.
        model_name: "primalformer", "primal+trans", "transformer" or a registry name.
        seed: seed of initialisation, dropout and batch order.
        run_dir: folder of this run.
        device: where to train.
        resume: continue from ``checkpoint.pt`` or reuse a finished ``result.json`` of the same run.
        checkpoint_every: epochs between resumable checkpoints.
        keep_checkpoint: keep ``checkpoint.pt`` after the run has finished.
        eval_batch_size: series per evaluation batch.
        progress: show a tqdm bar.
        deadline: a ``time.monotonic()`` value; after the epoch that passes it the run checkpoints and raises
            :class:`TimeLimitReached` (for wall-clock limits of shared machines and cluster jobs).
        progress_position: terminal line of the bar when several runs train in parallel processes.

    Returns:
        The result dict (also in ``result.json``); ``accuracy`` is the protocol's test accuracy in %.

    Raises:
        ValueError: if ``run_dir`` holds a different run and ``resume`` is set.
    """
    run_dir = Path(run_dir)
    identity = run_identity(config, data.name, model_name, seed, data.protocol)
    if resume and (run_dir / RESULT).is_file():
        result = json.loads((run_dir / RESULT).read_text())
        if result.get("identity") == identity:
            return result
        raise ValueError(
            f"{run_dir} holds a finished run with different settings; pass --fresh to overwrite it or choose another --out"
        )
    seed_everything(seed)
    model = build_model(config, model_name, data).to(device)
    optimizer = make_optimizer(config, model.parameters())
    logger = MetricLogger(run_dir)
    state = {"epoch": 0, "best_val": (-1.0, float("inf")), "best_epoch": None, "best_state": None, "train_seconds": 0.0,
             "eval_seconds": 0.0, "cpu_seconds": 0.0, "ksvd_start": None, "last_val": None}
    if resume and (run_dir / CHECKPOINT).is_file():
        saved = load_checkpoint(run_dir / CHECKPOINT, map_location=device)
        if saved["identity"] != identity:
            raise ValueError(
                f"{run_dir / CHECKPOINT} belongs to a run with different settings; pass --fresh to start over "
                "or choose another --out"
            )
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"])
        state = saved["state"]
        logger.load_existing()
        logger.truncate(state["epoch"])
        with (run_dir / "log.txt").open("a") as log:
            log.write(f"resumed after epoch {state['epoch']}\n")
    else:  # a fresh start: drop what an earlier attempt left before its first checkpoint
        for name in (CHECKPOINT, RESULT, "metrics.jsonl", "metrics.csv", "log.txt"):
            (run_dir / name).unlink(missing_ok=True)

    epochs, eta = config["epochs"], config["eta"]
    eval_at = evaluation_epochs(epochs, config["eval_every"])
    trim = not config["original_padding"]
    primal = any(name == "primal" for name in schedule_for_model(model_name, config["num_layers"]))
    generator = torch.Generator()
    log = (run_dir / "log.txt").open("a")
    bar = tqdm(range(state["epoch"] + 1, epochs + 1), desc=f"{data.name} {model_name} seed {seed}", unit="ep",
               disable=not progress, initial=state["epoch"], total=epochs, dynamic_ncols=True, leave=True,
               position=progress_position)
    for epoch in bar:
        start, cpu_start = time.perf_counter(), time.process_time()
        model.train()
        generator.manual_seed(seed * 100_003 + epoch)
        totals = {"loss": 0.0, "ce": 0.0, "ksvd": 0.0, "correct": 0}
        for index in training_batches(data.train.lengths, config["batch_size"], generator, config["bucket_pool"]):
            x, mask, y = gather(data.train, index, device, trim)
            logits = model(x, mask)
            ce = F.cross_entropy(logits, y)
            ksvd = core.ksvd_loss(model)
            loss = ce + eta * ksvd if primal and eta else ce
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config["clip_norm"]:
                clipped_step(optimizer, model.parameters(), config["clip_norm"])
            else:
                optimizer.step()
            if state["ksvd_start"] is None and primal:
                state["ksvd_start"] = ksvd.item()
            count = len(index)
            totals["loss"] += loss.item() * count
            totals["ce"] += ce.item() * count
            totals["ksvd"] += ksvd.item() * count
            totals["correct"] += (logits.argmax(dim=1) == y).sum().item()
        state["train_seconds"] += time.perf_counter() - start
        n = len(data.train)
        row = {"epoch": epoch, "train_loss": totals["loss"] / n, "train_ce": totals["ce"] / n,
               "train_ksvd": totals["ksvd"] / n, "train_accuracy": 100.0 * totals["correct"] / n}
        if epoch in eval_at:
            start = time.perf_counter()
            val_loss, val_acc = evaluate(model, data.val, device, eval_batch_size, trim)
            state["eval_seconds"] += time.perf_counter() - start
            row.update(val_loss=val_loss, val_accuracy=val_acc)
            state["last_val"] = val_acc
            if improved(data.protocol, (val_acc, val_loss), state["best_val"]):
                state["best_val"], state["best_epoch"] = (val_acc, val_loss), epoch
                state["best_state"] = copy.deepcopy(model.state_dict())
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val=f"{val_acc:.1f}", best=f"{state['best_val'][0]:.1f}")
        state["cpu_seconds"] += time.process_time() - cpu_start
        row["seconds"] = state["train_seconds"] + state["eval_seconds"]
        logger.log(**row)
        log.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()) + "\n")
        log.flush()
        state["epoch"] = epoch
        out_of_time = deadline is not None and time.monotonic() > deadline and epoch < epochs
        if (epoch % checkpoint_every == 0 and epoch < epochs) or out_of_time:
            save_checkpoint({"identity": identity, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "rng": torch.get_rng_state(), "state": state}, run_dir / CHECKPOINT)
        if out_of_time:
            bar.close()
            log.close()
            raise TimeLimitReached(f"{run_dir}: stopped after epoch {epoch} of {epochs} at the time limit; rerun to resume")
    bar.close()
    log.close()
    return _finish(model, data, state, identity, run_dir, device, eval_batch_size, trim, keep_checkpoint)


def _finish(model, data, state, identity, run_dir: Path, device, eval_batch_size, trim, keep_checkpoint) -> dict[str, Any]:
    """Evaluate the selected weights on the test file, save them and write ``result.json``."""
    model.load_state_dict(state["best_state"])
    test_loss, test_acc = evaluate(model, data.test, device, eval_batch_size, trim)
    torch.save(state["best_state"], run_dir / BEST_WEIGHTS)
    result = {
        "dataset": data.name,
        "model": identity["model"],
        "seed": identity["seed"],
        "protocol": data.protocol,
        "accuracy": test_acc,
        "test_loss": test_loss,
        "best_epoch": state["best_epoch"],
        "best_val_accuracy": state["best_val"][0],
        "last_val_accuracy": state["last_val"],
        "ksvd_start": state["ksvd_start"],
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": state["train_seconds"],
        "eval_seconds": state["eval_seconds"],
        "seconds": state["train_seconds"] + state["eval_seconds"],
        "cpu_seconds": state["cpu_seconds"],
        "threads": torch.get_num_threads(),
        "data": data.summary(),
        "identity": identity,
    }
    write_json(result, run_dir / RESULT)
    if not keep_checkpoint:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
    return result
