"""Choose the targets of a sweep, run each configuration in a fresh Python process and collect the JSON it prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from argparse import Namespace
from dataclasses import asdict, replace

from tqdm import tqdm

from core.bench.measure import BenchConfig
from core.bench.peers import installed_peers
from core.registry import attention_info, list_attentions

_MARKER = "BENCH_RESULT "
_MMAP_THRESHOLD = 131072  # bytes; glibc serves larger allocations by mmap and unmaps them when freed


def choose_targets(args: Namespace) -> list[str]:
    """Registry names (softmax added when missing: it is the ratios' baseline), then floors and peers if asked for."""
    names = args.mechanisms or list_attentions(causal=True if args.causal else None)
    for name in names:
        info = attention_info(name)  # raises a clear KeyError for unknown names
        if args.causal and not info.causal:
            raise SystemExit(f"error: {name!r} has no causal form; causal mechanisms: {list_attentions(causal=True)}")
    if "softmax" not in names:
        names = ["softmax", *names]
    targets = list(names)
    if args.floor:
        targets += [f"{name}:floor" for name in names if name != "softmax"]
    if args.peers:
        available = installed_peers()
        if not available:
            print("note: --peers given but none of the peer packages is installed (pip install -e '.[bench]')")
        targets += [f"peer:{peer}" for peer in available if not (args.causal and peer == "nystrom")]
    return targets


def _run_process(config: BenchConfig, timeout: float, env: dict) -> dict:
    """Measure ``config`` in a subprocess with environment ``env``; failures and timeouts come back as rows with a
    status."""
    command = [sys.executable, "-m", "core.bench.measure", json.dumps(asdict(config))]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**asdict(config), "status": "timeout"}
    for line in done.stdout.splitlines():
        if line.startswith(_MARKER):
            return json.loads(line[len(_MARKER):])
    status = "oom" if done.returncode in (-9, 137) else "error"
    return {**asdict(config), "status": status, "error": (done.stderr or done.stdout)[-500:]}


def run_one(config: BenchConfig, timeout: float) -> dict:
    """Time and peak memory of ``config``. On CPU they come from two processes: time under the default allocator,
    memory with a fixed mmap threshold (glibc then returns every large buffer to the OS when freed, so the
    resident-set high-water mark follows live tensors, but each large allocation faults in fresh pages, which
    would bill allocation-heavy code for the measurement)."""
    if not config.device.startswith("cpu"):
        return _run_process(config, timeout, dict(os.environ))
    timed = _run_process(replace(config, parts="time"), timeout, dict(os.environ))
    if timed["status"] != "ok":
        return {**timed, "parts": config.parts}
    memory = _run_process(replace(config, parts="memory"), timeout,
                          {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(_MMAP_THRESHOLD)})
    if memory["status"] != "ok":
        return {**memory, "parts": config.parts}
    return {**timed, "peak_mb": memory["peak_mb"], "parts": config.parts}


def run_sweep(targets: list[str], lengths: list[int], common: dict, options: dict, timeout: float) -> list[dict]:
    """All (target, length) pairs, shortest lengths first, with a progress bar.

    A target that fails or runs out of memory at some length is not run at longer lengths.
    """
    results = []
    failed: set[str] = set()
    pairs = [(length, target) for length in sorted(lengths) for target in targets]
    with tqdm(pairs, desc="bench", unit="run", file=sys.stderr) as bar:
        for length, target in bar:
            bar.set_postfix_str(f"{target} N={length}")
            if target in failed:
                continue
            base = target.split(":")[0] if not target.startswith("peer:") else target
            config = BenchConfig(target=target, length=length, options=options.get(base, {}), **common)
            row = run_one(config, timeout)
            results.append(row)
            if row["status"] != "ok":
                failed.add(target)
    return results
