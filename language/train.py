"""``python -m language train``: run ``fairseq-train`` with a named configuration and the Primal-Attention plugin
(Chen et al., NeurIPS 2023), with a progress bar, the raw log in ``SAVE_DIR/train.log`` and a JSON summary in
``SAVE_DIR/result.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from core.engine import write_json
from language import PLUGIN_DIR
from language.config import available_configs, load_config, parse_overrides, to_argv
from language.data.corpus import check_binarized
from language.fairseq_logs import parse_record
from language.process import fairseq_executable, run_logged


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help=f"a shipped configuration ({', '.join(available_configs())}) or a path to a JSON file")
    parser.add_argument("--data", required=True, type=Path, help="binarised corpus (output of prepare-kjv/prepare-wikitext)")
    parser.add_argument("--save-dir", required=True, type=Path,
                        help="run directory: checkpoints, train.log (fairseq output) and result.json")
    parser.add_argument("--max-update", type=int, help="stop after this many updates (overrides the configuration)")
    parser.add_argument("--minutes", type=float, help="stop after this many minutes of training (fairseq --stop-time-hours)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    parser.add_argument("--threads", type=int, help="CPU threads for the training process (OMP_NUM_THREADS)")
    parser.add_argument("--nproc", type=int, default=1,
                        help="CPU processes for data-parallel training through torchrun (default: 1); on GPUs fairseq "
                             "uses every visible GPU by itself, so leave this at 1")
    parser.add_argument("--log-interval", type=int, default=10, help="updates between training log records (default: 10)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FLAG=VALUE",
                        help="override a configuration flag, e.g. --set lr=0.0005 --set decoder-layers=2 (repeatable)")
    parser.add_argument("--timeout", type=float, help="kill fairseq-train after this many seconds")
    parser.add_argument("--dry-run", action="store_true", help="print the fairseq-train command and exit")
    parser.add_argument("extra", nargs=argparse.REMAINDER,
                        help="after '--': extra fairseq-train flags passed through unchanged")


def build_command(args: argparse.Namespace, config: dict) -> list[str]:
    """The full training command: fairseq-train (or torchrun with the CPU worker) and its flags."""
    fairseq_args = dict(config["fairseq_args"])
    fairseq_args.update(parse_overrides(args.overrides))
    if args.max_update is not None:
        fairseq_args["max-update"] = args.max_update
    if args.minutes is not None:
        fairseq_args["stop-time-hours"] = args.minutes / 60.0
    fairseq_args.update({
        "user-dir": str(PLUGIN_DIR), "save-dir": str(args.save_dir), "seed": args.seed,
        "log-format": "json", "log-interval": args.log_interval,
    })
    if not torch.cuda.is_available():
        fairseq_args["cpu"] = True
    extra = [a for a in args.extra if a != "--"]
    flags = [str(args.data), *to_argv(fairseq_args), *extra]
    if args.nproc > 1:
        torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
        return [torchrun, "--standalone", f"--nproc_per_node={args.nproc}", "-m", "language.cpu_worker", *flags]
    return [fairseq_executable("fairseq-train"), *flags]


class TrainingMonitor:
    """Collects fairseq's JSON records and drives a progress bar over updates (or minutes)."""

    def __init__(self, max_update: int | None, minutes: float | None, label: str, position: int = 0) -> None:
        self.records: dict[str, list[dict]] = {"train_inner": [], "train": [], "valid": []}
        self.minutes = minutes
        self.start = time.monotonic()
        total = round(minutes * 60) if minutes is not None else max_update
        unit = "s" if minutes is not None else "upd"
        self.bar = tqdm(total=total, desc=label, unit=unit, position=position, dynamic_ncols=True, leave=True)

    def __call__(self, line: str) -> None:
        parsed = parse_record(line)
        if parsed is None:
            if "Traceback" in line or "Error" in line:
                tqdm.write(line)
            return
        kind, stats = parsed
        self.records[kind].append(stats)
        if kind == "train_inner":
            # fairseq's "wall" is its own elapsed time, the clock --stop-time-hours also follows (startup excluded)
            if self.minutes is not None:
                done = stats.get("wall", time.monotonic() - self.start)
            else:
                done = stats.get("num_updates", 0)
            self.bar.n = min(int(done), self.bar.total or int(done))
            self.bar.set_postfix(loss=stats.get("loss"), ppl=stats.get("ppl"))
        elif kind == "valid":
            tqdm.write(f"[{self.bar.desc}] valid after {stats.get('valid_num_updates')} updates: "
                       f"ppl {stats.get('valid_ppl')}, loss {stats.get('valid_loss')}")

    def close(self) -> None:
        self.bar.close()

    def summary(self) -> dict:
        valid = self.records["valid"]
        best = min(valid, key=lambda r: r.get("valid_ppl", float("inf"))) if valid else None
        # periodic records when there are any, else the per-epoch ones (a run shorter than one log interval)
        speeds = [r["wps"] for r in self.records["train_inner"] if "wps" in r]
        speeds = speeds or [r["train_wps"] for r in self.records["train"] if "train_wps" in r]
        return {
            "last_train_inner": self.records["train_inner"][-1] if self.records["train_inner"] else None,
            "train_epochs": self.records["train"],
            "valid": valid,
            "best_valid_ppl": best.get("valid_ppl") if best else None,
            "final_valid_ppl": valid[-1].get("valid_ppl") if valid else None,
            "mean_train_wps": round(sum(speeds) / len(speeds), 1) if speeds else None,
        }


def run_training(args: argparse.Namespace, position: int = 0) -> dict:
    """Train with ``args`` (as parsed by :func:`add_arguments`); returns the summary also written to result.json."""
    config = load_config(args.config)
    check_binarized(args.data)
    command = build_command(args, config)
    args.save_dir.mkdir(parents=True, exist_ok=True)
    merged = {**config["fairseq_args"], **parse_overrides(args.overrides)}
    max_update = args.max_update if args.max_update is not None else merged.get("max-update")
    monitor = TrainingMonitor(max_update, args.minutes, label=config["name"], position=position)
    try:
        seconds = run_logged(command, args.save_dir / "train.log", on_line=monitor, timeout=args.timeout,
                             threads=args.threads)
    finally:
        monitor.close()
    result = {
        "config": config["name"],
        "description": config["description"],
        "command": command,
        "wall_seconds": round(seconds, 1),
        "checkpoint_last": str(args.save_dir / "checkpoint_last.pt"),
        "checkpoint_best": str(args.save_dir / "checkpoint_best.pt"),
        **monitor.summary(),
    }
    write_json(result, args.save_dir / "result.json")
    return result


def main(args: argparse.Namespace) -> int:
    if args.dry_run:
        config = load_config(args.config)
        print(" ".join(build_command(args, config)))
        return 0
    result = run_training(args)
    print(json.dumps({k: result[k] for k in ("config", "wall_seconds", "best_valid_ppl", "final_valid_ppl")}))
    print(f"log: {args.save_dir / 'train.log'}  result: {args.save_dir / 'result.json'}")
    return 0
