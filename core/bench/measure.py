"""Measure one configuration in this process: forward+backward time and peak memory.

Run by :mod:`core.bench.runner` in fresh processes, so allocator state and peak-memory counters of one
configuration never leak into another. Peak memory is ``max_memory_allocated`` on CUDA and the resident-set
high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) above the pre-run baseline on CPU. On CPU the
runner measures time and memory in two processes: time under the default allocator, memory with glibc's mmap
threshold fixed so that freed tensors leave the resident set (which also makes every large allocation fault in
fresh pages: the causal performer step took 1.7x its time under that setting).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field

import torch

from core.bench.peers import build_peer
from core.engine.memory import PeakMemory, synchronize


@dataclass
class BenchConfig:
    """One point of a sweep. ``target`` is a registry name, ``peer:<package>`` or ``<name>:floor``."""

    target: str
    length: int
    batch: int = 1
    dim: int = 512
    heads: int = 8
    causal: bool = False
    dtype: str = "float32"
    device: str = "cpu"
    repeats: int = 3
    threads: int = 2
    options: dict = field(default_factory=dict)
    parts: str = "all"  # "time", "memory" or "all"


def build_module(config: BenchConfig) -> tuple[torch.nn.Module, bool]:
    """The module to time and whether to time its projection floor instead of its forward."""
    from core.registry import build_attention

    name, floor = config.target, False
    if name.endswith(":floor"):
        name, floor = name[: -len(":floor")], True
    if name.startswith("peer:"):
        module = build_peer(name[len("peer:") :], config.dim, config.heads, config.causal, config.length, **config.options)
    else:
        module = build_attention(name, config.dim, config.heads, causal=config.causal, **config.options)
    return module, floor


def forward_backward_seconds(module: torch.nn.Module, x: torch.Tensor, floor: bool = False) -> float:
    """Seconds of one forward+backward of ``module`` on ``x`` (of its projection floor with ``floor``), synchronised
    on CUDA; gradients are cleared afterwards, outside the timed span."""
    run = module.projection_floor if floor else module
    start = time.perf_counter()
    run(x).float().pow(2).mean().backward()
    synchronize(x.device)
    elapsed = time.perf_counter() - start
    module.zero_grad(set_to_none=True)
    x.grad = None
    return elapsed


def measure(config: BenchConfig) -> dict:
    """Time forward+backward of ``config`` and measure its peak memory; returns a JSON-able dict.

    ``config.parts`` limits the result to ``time_ms`` ("time") or ``peak_mb`` ("memory", one timed run).
    """
    if config.parts not in ("all", "time", "memory"):
        raise ValueError(f"parts must be 'all', 'time' or 'memory', got {config.parts!r}")
    torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    dtype = getattr(torch, config.dtype)
    module, floor = build_module(config)
    module = module.to(device=device, dtype=dtype)
    x = torch.randn(config.batch, config.length, config.dim, device=device, dtype=dtype, requires_grad=True)
    forward_backward_seconds(module, x, floor)  # warm-up: allocator, kernels, lazy init
    meter = PeakMemory(device)
    meter.start()
    repeats = 1 if config.parts == "memory" else max(config.repeats, 1)
    times = [forward_backward_seconds(module, x, floor) for _ in range(repeats)]
    result = {**asdict(config), "status": "ok"}
    if config.parts != "memory":
        result["time_ms"] = 1000 * statistics.median(times)
    if config.parts != "time":
        result["peak_mb"] = meter.peak_bytes() / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker process: one JSON config in argv[1], one JSON line on stdout."""
    parser = argparse.ArgumentParser(
        prog="python -m core.bench.measure",
        description="Measure one benchmark configuration in this process and print one line 'BENCH_RESULT {json}' "
        "(python -m core.bench runs this once per mechanism and length).",
    )
    fields = ", ".join(BenchConfig.__dataclass_fields__)
    parser.add_argument("config", help=f"JSON object of BenchConfig fields ({fields}); target and length are "
                        'required, e.g. \'{"target": "primal", "length": 4096, "repeats": 1}\'')
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = BenchConfig(**json.loads(args.config))
    except (json.JSONDecodeError, TypeError) as error:
        parser.error(f"config must be a JSON object of BenchConfig fields ({fields}): {error}")
    try:
        result = measure(config)
    except (RuntimeError, MemoryError, ValueError, ImportError, KeyError) as error:
        oom = isinstance(error, MemoryError) or "out of memory" in str(error).lower()
        result = {**asdict(config), "status": "oom" if oom else "error", "error": str(error)[:500]}
    print("BENCH_RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
