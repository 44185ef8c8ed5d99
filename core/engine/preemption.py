"""Preemption safety: catch the signal a scheduler sends before killing a job, checkpoint, requeue.

SLURM sends the signal chosen with ``#SBATCH --signal=USR1@120`` (here: SIGUSR1) some seconds before the time
limit, and SIGTERM on cancellation or preemption. The trainer polls :attr:`PreemptionHandler.requested` between
steps, saves a checkpoint, and calls :meth:`PreemptionHandler.requeue`, which asks SLURM to put the job back in
the queue; the next run resumes from the latest checkpoint.
"""

from __future__ import annotations

import os
import signal
import subprocess
from types import FrameType


class PreemptionHandler:
    """Sets a flag when one of ``signals`` arrives (the default handlers are restored by :meth:`close`).

    Args:
        signals: signal numbers to catch. Default: SIGUSR1 and SIGTERM.
    """

    def __init__(self, signals: tuple[int, ...] = (signal.SIGUSR1, signal.SIGTERM)) -> None:
        self.requested = False
        self.received: int | None = None
        self._previous = {}
        for sig in signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.received = signum

    def close(self) -> None:
        """Restore the handlers that were installed before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __enter__(self) -> PreemptionHandler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def requeue() -> bool:
        """Requeue this SLURM job (``scontrol requeue $SLURM_JOB_ID``); False outside SLURM or on failure."""
        array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        job_id = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID")
        if not job_id:
            return False
        try:
            subprocess.run(["scontrol", "requeue", job_id], check=True, capture_output=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return False
        return True
