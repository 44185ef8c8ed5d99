"""Peak memory on CUDA (``max_memory_allocated``) or on CPU (the process's resident-set high-water mark).

On CPU the high-water mark ``VmHWM`` is reset through ``/proc/self/clear_refs`` where Linux allows it, so the
figure covers only the measured steps; the pre-run resident set is subtracted.
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


class PeakMemory:
    """Measure the peak memory of a block of work on ``device``.

    Usage: ``meter = PeakMemory(device); meter.start(); ...; meter.peak_bytes()``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.baseline = 0
        self.method = "cuda.max_memory_allocated" if device.type == "cuda" else "VmHWM - VmRSS at start"

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            self.method = "VmHWM (process lifetime; clear_refs not permitted)"
        self.baseline = _status_bytes("VmRSS")

    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        return max(_status_bytes("VmHWM") - self.baseline, 0)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on CUDA (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
