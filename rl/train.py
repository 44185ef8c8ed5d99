"""``python -m rl train``: offline training of a Decision Transformer (Chen et al., 2021) or Primal.+DT
(Chen et al., NeurIPS 2023) on D4RL-layout data.

Loss: the mean squared error of the predicted actions over real (unpadded) steps, plus ``eta`` times the KSVD
loss of the primal layers. AdamW with a linear learning-rate warm-up, gradient clipping, batches of windows
drawn uniformly with replacement (the Flowformer/Primal.+DT sampler). A run directory holds ``checkpoint.pt``
(atomic, resumed automatically), ``metrics.jsonl``/``metrics.csv``, ``train.log``, ``result.json`` and
``curves.png``. Under torchrun or multi-task SLURM the model is wrapped in DistributedDataParallel.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from core.engine import (
    MetricLogger,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    select_device,
    write_json,
)
from core.losses import ksvd_loss
from rl.config import TrainConfig, attention_schedule, build_model
from rl.data import ContextDataset, dataset_statistics, load_dataset
from rl.envs import default_low_rank, task_key, task_spec
from rl.evaluate import evaluate_returns

CHECKPOINT = "checkpoint.pt"
LOG_EVERY = 50
_HELP = {
    "dataset": "D4RL-layout .hdf5 file, d4rl:<name> (needs d4rl) or minari:<id> (needs minari)",
    "env": "task for evaluation: hopper, halfcheetah, walker2d (default: from the data set's env_id or name)",
    "env_version": "gymnasium MuJoCo version for evaluation: v5 or v4",
    "model": "dt (softmax GPT), primal+dt (last --primal-layers blocks primal) or any causal registry attention",
    "primal_layers": "number of final primal blocks in primal+dt",
    "low_rank": "s, Primal-Attention's singular directions (default: the paper's value for the task and data set)",
    "primal_original_padding": "average the KSVD terms over padded steps too, as the official code does",
    "context_length": "K, timesteps per window (3K tokens)",
    "embed_dim": "transformer width h",
    "num_layers": "transformer blocks",
    "num_heads": "attention heads",
    "dropout": "embedding, residual and attention dropout",
    "activation": "MLP activation: relu (DT code) or gelu",
    "max_ep_len": "timestep embedding size and evaluation time limit",
    "rtg_scale": "returns-to-go are divided by this",
    "batch_size": "windows per step (per process)",
    "learning_rate": "peak AdamW learning rate",
    "weight_decay": "AdamW weight decay",
    "warmup_steps": "linear learning-rate warm-up steps",
    "grad_clip": "gradient-norm clip",
    "eta": "weight of the KSVD loss",
    "max_steps": "stop after this many optimisation steps",
    "max_minutes": "stop after this much training time (evaluation excluded; kept across resumes)",
    "eval_every": "evaluate every this many steps (0: only at the end)",
    "eval_episodes": "episodes per target in intermediate evaluations",
    "final_eval_episodes": "episodes per target in the final evaluation (the paper: 100)",
    "targets": "target returns to condition on (default: the paper's, e.g. 3600 1800 for hopper)",
    "checkpoint_every": "save checkpoint.pt every this many steps",
    "seed": "random seed",
    "device": "auto, cpu, cuda or cuda:N",
    "run_dir": "output folder (resumed if it holds checkpoint.pt)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None,
                        help="JSON file of settings (e.g. rl/configs/cpu-benchmark.json); flags given override it")
    defaults = TrainConfig()
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        kind = {"low_rank": int, "max_minutes": float}.get(field.name, type(default))
        if field.name == "targets":
            parser.add_argument(flag, type=float, nargs="+", default=None, help=_HELP[field.name])
        elif isinstance(default, bool):
            parser.add_argument(flag, action="store_const", const=True, default=None, help=_HELP[field.name])
        else:
            parser.add_argument(flag, type=kind, default=None, help=f"{_HELP[field.name]} (default {default})")
    parser.add_argument("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then ``--config``, then explicit flags."""
    values: dict[str, Any] = {}
    if args.config is not None:
        if not args.config.is_file():
            raise FileNotFoundError(f"config file {args.config} does not exist")
        values.update(json.loads(args.config.read_text()))
    values.update({f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None})
    config = TrainConfig.from_dict(values)
    if not config.dataset:
        raise ValueError("--dataset is required: a D4RL-layout .hdf5 file, d4rl:<name> or minari:<id>")
    return config


def restore_model(state: dict[str, Any], device: torch.device):
    """Rebuild the model of a checkpoint. Returns ``(model, config, meta)``."""
    config = TrainConfig.from_dict(state["config"])
    meta = state["meta"]
    model = build_model(config, meta["state_dim"], meta["act_dim"], meta["low_rank"])
    model.load_state_dict(state["model"])
    return model.to(device), config, meta


class _TqdmHandler(logging.Handler):
    """Console lines that do not break tqdm's progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record))


def _logger(run_dir: Path, enabled: bool) -> logging.Logger:
    log = logging.getLogger(f"rl.train.{run_dir}")
    log.setLevel(logging.INFO)
    log.propagate = False
    if enabled and not log.handlers:
        run_dir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(run_dir / "train.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.addHandler(_TqdmHandler())
    return log


def _out_of_time(elapsed: float, budget: float, distributed: bool, device: torch.device) -> bool:
    """Whether the time budget is spent; under DDP the ranks agree (any rank out of time stops all)."""
    if budget == float("inf"):
        return False
    flag = torch.tensor(float(elapsed >= budget), device=device)
    if distributed:
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def action_loss(predicted: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over real steps: ``predicted, actions (B, K, A)``, ``mask (B, K)`` bool."""
    return (predicted - actions).pow(2)[mask].mean()


def train(config: TrainConfig, resume: bool = True, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one run and evaluate it; returns the content of ``result.json``."""
    device = select_device(config.device)
    context = init_distributed(device)
    if context.enabled and device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
    main = context.is_main
    seed_everything(config.seed + context.rank)
    run_dir = Path(config.run_dir)
    log = _logger(run_dir, main)

    trajectories, info = load_dataset(config.dataset)
    task = task_key(config.env or str(info.get("task") or info.get("env_id") or info["name"]))
    spec = task_spec(task)
    data = ContextDataset(trajectories, config.context_length, config.rtg_scale, config.max_ep_len)
    if data.state_dim != spec.state_dim or data.act_dim != spec.act_dim:
        raise ValueError(
            f"{config.dataset} has states of size {data.state_dim} and actions of size {data.act_dim}, but {task} "
            f"has {spec.state_dim} and {spec.act_dim}: pass the right --env"
        )
    statistics = dataset_statistics(trajectories)
    low_rank = config.low_rank or default_low_rank(task, str(info["name"]))
    targets = config.targets or list(spec.targets)
    meta = {"task": task, "state_dim": data.state_dim, "act_dim": data.act_dim, "low_rank": low_rank,
            "state_mean": data.state_mean, "state_std": data.state_std, "dataset": info, "statistics": statistics,
            "schedule": attention_schedule(config.model, config.num_layers, config.primal_layers)}

    model = build_model(config, data.state_dim, data.act_dim, low_rank).to(device)
    net = torch.nn.parallel.DistributedDataParallel(model) if context.enabled else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(config.warmup_steps, 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 1.0))
    generator = torch.Generator().manual_seed(config.seed + 7919 * context.rank)
    metrics = MetricLogger(run_dir, enabled=main)
    step, elapsed = 0, 0.0
    checkpoint_path = run_dir / CHECKPOINT
    if resume and checkpoint_path.is_file():
        state = load_checkpoint(checkpoint_path, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        step, elapsed = state["step"], state["elapsed"]
        metrics.load_existing()
        metrics.truncate(state["log_rows"])
        log.info("resumed from %s at step %d (%.1f min trained)", checkpoint_path, step, elapsed / 60)
    elif main:
        metrics.truncate(0)
    if main:
        write_json({**config.to_dict(), "resolved": {k: v for k, v in meta.items() if k not in ("state_mean", "state_std")}},
                   run_dir / "config.json")
    log.info("task %s, %d trajectories, mean return %.1f; model %s %s, s=%d, %d parameters", task,
             statistics["episodes"], statistics["return_mean"], config.model, meta["schedule"], low_rank,
             sum(p.numel() for p in model.parameters()))

    def save() -> None:
        if main:
            save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "generator": generator.get_state(), "step": step,
                             "elapsed": elapsed, "log_rows": len(metrics.rows), "config": config.to_dict(),
                             "meta": meta}, checkpoint_path)

    def evaluate(episodes: int) -> list[dict]:
        results = []
        for target in targets:
            result = evaluate_returns(model, task, target, episodes, data.state_mean, data.state_std, config.rtg_scale,
                                      config.env_version, config.seed, config.max_ep_len, progress)
            metrics.log(step=step, target=target, eval_return=result["return_mean"], eval_std=result["return_std"],
                        normalized=result["normalized_mean"])
            log.info("step %d target %g: return %.1f +- %.1f (normalised %.1f)", step, target,
                     result["return_mean"], result["return_std"], result["normalized_mean"])
            results.append(result)
        return results

    budget = float("inf") if config.max_minutes is None else 60.0 * config.max_minutes
    finished = step >= config.max_steps or elapsed >= budget
    if finished and (run_dir / "result.json").is_file():
        stored = json.loads((run_dir / "result.json").read_text())
        if stored.get("steps") == step:
            log.info("run in %s is already complete (step %d); keeping its result.json", run_dir, step)
            return stored
    total = config.max_steps if config.max_minutes is None else None
    bar = tqdm(total=total, initial=step, desc=f"train {config.model}", unit="step", disable=not (main and progress))
    window_loss, window_ksvd, window_count = 0.0, 0.0, 0

    def log_window() -> None:
        nonlocal window_loss, window_ksvd, window_count
        metrics.log(step=step, action_loss=window_loss / window_count, ksvd=window_ksvd / window_count,
                    lr=scheduler.get_last_lr()[0], minutes=elapsed / 60)
        bar.set_postfix(loss=f"{window_loss / window_count:.4f}", min=f"{elapsed / 60:.1f}")
        window_loss, window_ksvd, window_count = 0.0, 0.0, 0

    net.train()
    while step < config.max_steps and not _out_of_time(elapsed, budget, context.enabled, device):
        started = time.perf_counter()
        batch = data.batch(torch.randint(len(data), (config.batch_size,), generator=generator))
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        predicted = net(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"], batch["mask"])
        task_loss = action_loss(predicted, batch["actions"], batch["mask"])
        regulariser = ksvd_loss(model)
        loss = task_loss + config.eta * regulariser
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        elapsed += time.perf_counter() - started
        window_loss += task_loss.item()
        window_ksvd += float(regulariser.detach())
        window_count += 1
        bar.update(1)
        if step % LOG_EVERY == 0 or step == config.max_steps:
            log_window()
        if main and config.eval_every and step % config.eval_every == 0 and step < config.max_steps:
            evaluate(config.eval_episodes)
        if step % config.checkpoint_every == 0:
            save()
    bar.close()
    if window_count:
        log_window()
    save()
    if not main:
        return {}
    final = evaluate(config.final_eval_episodes)
    best = max(final, key=lambda r: r["return_mean"])
    result = {"task": task, "model": config.model, "schedule": meta["schedule"], "low_rank": low_rank, "steps": step,
              "train_minutes": elapsed / 60, "dataset": {**statistics, "spec": config.dataset},
              "final_evaluation": final, "best_target": best["target"], "best_return_mean": best["return_mean"],
              "best_return_std": best["return_std"], "best_normalized": best["normalized_mean"],
              "beats_dataset_mean": best["return_mean"] > statistics["return_mean"]}
    write_json(result, run_dir / "result.json")
    from rl.plots import plot_training

    plot_training(metrics.rows, run_dir / "curves.png", statistics["return_mean"])
    log.info("done: %d steps in %.1f min; best target %g return %.1f (data set mean %.1f)", step, elapsed / 60,
             best["target"], best["return_mean"], statistics["return_mean"])
    return result


def main(args: argparse.Namespace) -> dict[str, Any]:
    config = config_from_args(args)
    result = train(config, resume=not args.no_resume)
    if result:
        print(json.dumps({k: result[k] for k in ("model", "steps", "train_minutes", "best_target", "best_return_mean",
                                                  "best_normalized", "beats_dataset_mean")}, indent=2))
        print(f"data set mean return {result['dataset']['return_mean']:.1f}; results in {config.run_dir}/result.json")
    return result
