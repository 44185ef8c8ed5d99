"""``python -m timeseries.benchmark``: the main job's cost per epoch, this suite's loop against the original's.

Both loops train the same classifier (Chen et al., NeurIPS 2023, section 4.1) on JapaneseVowels for a few epochs
and evaluate on the test file on the original schedule. "original" reproduces the official loop's work: batches
padded to the longest training series, plain shuffled batches, attention over padding, ``torch.optim.RAdam``
without fused or multi-tensor kernels (the official code steps parameters one by one), evaluation in batches of
16 padded series including the untrained model. "suite" is :func:`timeseries.train.train_run`'s loop. CPU seconds
(process time) are reported beside wall seconds because shared machines make wall time noisy; both are projected
to the configured epochs (100).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

import core
from core.engine import seed_everything, write_json
from timeseries.batching import gather, training_batches
from timeseries.config import PAPER_MODELS, resolve_config
from timeseries.data import load_uea
from timeseries.optim import clipped_step
from timeseries.train import build_model, evaluate, evaluation_epochs, make_optimizer


def time_loop(config: dict, data, model_name: str, mode: str, epochs: int, seed: int = 666) -> dict:
    """Time ``epochs`` epochs of training and as many test evaluations; project to the configured epochs and the
    evaluation schedule (CPU and wall seconds)."""
    original = mode == "original"
    config = {**config, "original_padding": original}
    seed_everything(seed)
    model = build_model(config, model_name, data)
    if original:
        optimizer = torch.optim.RAdam(model.parameters(), lr=config["lr"], foreach=False)
    else:
        optimizer = make_optimizer(config, model.parameters())
    device = torch.device("cpu")
    trim, eval_batch = (False, 16) if original else (True, 64)
    schedule = evaluation_epochs(config["epochs"], config["eval_every"])
    total_evaluations = len(schedule) + (1 if original else 0)  # the original also evaluates the untrained model
    generator = torch.Generator()
    train_cpu = train_wall = 0.0
    eval_cpu = eval_wall = 0.0
    for epoch in range(1, epochs + 1):
        cpu, wall = time.process_time(), time.perf_counter()
        model.train()
        generator.manual_seed(seed + epoch)
        pool = 0 if original else config["bucket_pool"]
        for index in training_batches(data.train.lengths, config["batch_size"], generator, pool):
            x, mask, y = gather(data.train, index, device, trim)
            loss = F.cross_entropy(model(x, mask), y) + config["eta"] * core.ksvd_loss(model)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if original:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config["clip_norm"], foreach=False)
                optimizer.step()
            else:  # the suite's own step (timeseries.train)
                clipped_step(optimizer, model.parameters(), config["clip_norm"])
        train_cpu += time.process_time() - cpu
        train_wall += time.perf_counter() - wall
        cpu, wall = time.process_time(), time.perf_counter()
        evaluate(model, data.test, device, eval_batch, trim)
        eval_cpu += time.process_time() - cpu
        eval_wall += time.perf_counter() - wall
    per_epoch, per_eval = train_cpu / epochs, eval_cpu / epochs
    return {
        "model": model_name,
        "mode": mode,
        "epochs_timed": epochs,
        "train_cpu_per_epoch": per_epoch,
        "eval_cpu_per_evaluation": per_eval,
        "train_wall_per_epoch": train_wall / epochs,
        "eval_wall_per_evaluation": eval_wall / epochs,
        "evaluations": total_evaluations,
        "projected_cpu_seconds": per_epoch * config["epochs"] + per_eval * total_evaluations,
        "projected_wall_seconds": train_wall / epochs * config["epochs"] + eval_wall / epochs * total_evaluations,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m timeseries.benchmark", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="JapaneseVowels", help="UEA data set")
    parser.add_argument("--data-dir", default=None, help="root of the Multivariate2018_ts archive (default: sktime's data)")
    parser.add_argument("--model", nargs="+", default=list(PAPER_MODELS), help="models to time")
    parser.add_argument("--epochs", type=int, default=4, help="epochs timed per (model, loop); results are projected")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", default="runs/timeseries/benchmark.json", help="JSON result file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_uea(args.dataset, args.data_dir)
    rows = []
    for model_name in tqdm(args.model, desc="models"):
        config = resolve_config(args.dataset, model_name)
        for mode in ("original", "suite"):
            rows.append(time_loop(config, data, model_name, mode, args.epochs))
    print(f"{'model':14} {'loop':9} {'train cpu s/epoch':>18} {'eval cpu s':>11} {'projected cpu s':>16}")
    for row in rows:
        print(f"{row['model']:14} {row['mode']:9} {row['train_cpu_per_epoch']:18.2f} "
              f"{row['eval_cpu_per_evaluation']:11.2f} {row['projected_cpu_seconds']:16.0f}")
    totals = {mode: sum(r["projected_cpu_seconds"] for r in rows if r["mode"] == mode) for mode in ("original", "suite")}
    speedup = totals["original"] / totals["suite"]
    print(f"projected CPU seconds for {len(args.model)} models: original {totals['original']:.0f}, "
          f"suite {totals['suite']:.0f} ({speedup:.2f}x)")
    write_json({"rows": rows, "totals": totals, "speedup": speedup, "threads": torch.get_num_threads(),
                "load_average": list(os.getloadavg())}, Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
