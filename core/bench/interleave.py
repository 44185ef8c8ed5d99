"""Time ratios that survive a busy machine: every target built in one process and timed in alternation.

``python -m core.bench`` measures each configuration in a fresh process, which is right for peak memory but lets
a load change between two processes distort their time ratio. Here all targets run round-robin, one
forward+backward each per round, so every round sees (nearly) the same load; the ratio reported for a target is
the median over rounds of its time divided by the reference's time in the same round.

    python -m core.bench.interleave --targets performer peer:performer --reference peer:performer --length 16384 \\
        --options '{"performer": {"num_features": 128}, "peer:performer": {"nb_features": 128}}'
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import replace

import torch
from tqdm import tqdm

from core.bench.measure import BenchConfig, build_module, forward_backward_seconds
from core.engine.logging import write_json


def time_round_robin(configs: list[BenchConfig], rounds: int, progress: bool = True) -> list[list[float]]:
    """Seconds of forward+backward for each config in each round: ``[round][config]``, after one warm-up each."""
    device = torch.device(configs[0].device)
    dtype = getattr(torch, configs[0].dtype)
    entries = []
    for config in configs:
        module, floor = build_module(config)
        x = torch.randn(config.batch, config.length, config.dim, device=device, dtype=dtype, requires_grad=True)
        entries.append((module.to(device=device, dtype=dtype), x, floor))
    for entry in entries:
        forward_backward_seconds(*entry)
    return [[forward_backward_seconds(*entry) for entry in entries]
            for _ in tqdm(range(rounds), desc="rounds", disable=not progress, file=sys.stderr)]


def summarise(targets: list[str], times: list[list[float]], reference: str) -> list[dict]:
    """Median seconds per target and the median over rounds of ``time / reference time`` (same round)."""
    ref = targets.index(reference)
    return [{"target": target, "time_ms": 1000 * statistics.median(row[i] for row in times),
             "ratio": statistics.median(row[i] / row[ref] for row in times), "reference": reference,
             "rounds": len(times)} for i, target in enumerate(targets)]


def format_rows(rows: list[dict], length: int) -> str:
    lines = [f"| target | N | median time (ms) | time / {rows[0]['reference']} (median of rounds) |", "|---|---|---|---|"]
    lines += [f"| {r['target']} | {length} | {r['time_ms']:.1f} | {r['ratio']:.2f}x |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.bench.interleave", description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", nargs="+", required=True,
                        help="registry names, peer:<package> or <name>:floor (as in python -m core.bench)")
    parser.add_argument("--reference", default=None, help="target the ratios divide by (default: the first)")
    parser.add_argument("--length", type=int, default=4096, help="sequence length N (default 4096)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds after the warm-up (default 5)")
    parser.add_argument("--options", default="{}", help="JSON of per-target options, keyed like python -m core.bench")
    parser.add_argument("--out", default=None, help="JSON file for the rows (optional)")
    args = parser.parse_args(argv)
    reference = args.reference or args.targets[0]
    if reference not in args.targets:
        parser.error(f"--reference {reference!r} is not among --targets {args.targets}")
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as error:
        parser.error(f"--options is not valid JSON ({error})")
    torch.set_num_threads(args.threads)
    base = BenchConfig(target="", length=args.length, batch=args.batch, dim=args.dim, heads=args.heads,
                       causal=args.causal, dtype=args.dtype, device=args.device, threads=args.threads)
    configs = []
    for target in args.targets:
        key = target if target.startswith("peer:") else target.split(":")[0]
        configs.append(replace(base, target=target, options=options.get(key, {})))
    rows = summarise(args.targets, time_round_robin(configs, args.rounds), reference)
    print(format_rows(rows, args.length))
    if args.out:
        write_json({"config": vars(args), "results": rows}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
