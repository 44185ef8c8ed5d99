"""What every suite's trainer needs: seeding, device choice, distributed init, checkpoints, metric logs.

Suites import these instead of writing their own (see docs/architecture.md).
"""

from core.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from core.engine.checkpointer import Checkpointer
from core.engine.data import make_loader
from core.engine.distributed import (
    DistributedContext,
    barrier,
    init_distributed,
    is_main_process,
    reduce_mean,
    reduce_sum,
    wrap_model,
)
from core.engine.logging import MetricLogger, write_json
from core.engine.preemption import PreemptionHandler
from core.engine.seeding import flush_denormals, seed_everything, select_device

__all__ = [
    "Checkpointer",
    "DistributedContext",
    "PreemptionHandler",
    "make_loader",
    "wrap_model",
    "MetricLogger",
    "init_distributed",
    "is_main_process",
    "latest_checkpoint",
    "load_checkpoint",
    "reduce_mean",
    "reduce_sum",
    "barrier",
    "save_checkpoint",
    "seed_everything",
    "flush_denormals",
    "select_device",
    "write_json",
]
