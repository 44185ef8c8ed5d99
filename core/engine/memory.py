"""Peak memory of a block of work: ``max_memory_allocated`` on CUDA, the resident-set high-water mark on CPU.

On CPU the high-water mark ``VmHWM`` is reset through ``/proc/self/clear_refs`` where Linux allows it, and the
resident set at :meth:`PeakMemory.start` is subtracted, so the figure covers only the measured work. Set
``MALLOC_MMAP_THRESHOLD_=131072`` in the environment of the measured process so that freed tensors leave the
resident set (the benchmark runner does).
"""

from __future__ import annotations

from pathlib import Path

import torch


def _status_bytes(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on CUDA (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """``meter = PeakMemory(device); meter.start(); ...work...; meter.peak_bytes()``."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.baseline = 0
        self.method = "cuda.max_memory_allocated" if self.device.type == "cuda" else "VmHWM - VmRSS at start"

    def start(self) -> None:
        """Reset the peak counter and record the baseline."""
        synchronize(self.device)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "VmHWM (process lifetime; clear_refs not permitted)"
        self.baseline = _status_bytes("VmRSS")

    def peak_bytes(self) -> int:
        """Peak bytes above the baseline since :meth:`start`."""
        synchronize(self.device)
        if self.device.type == "cuda":
            return max(int(torch.cuda.max_memory_allocated(self.device)) - self.baseline, 0)
        return max(_status_bytes("VmHWM") - self.baseline, 0)
