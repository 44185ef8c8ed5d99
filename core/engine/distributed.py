"""Distributed initialisation from torchrun or SLURM variables; nccl on GPU, gloo on CPU."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _first_host(nodelist: str) -> str:
    try:
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
        return out.stdout.split()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        return nodelist.split(",")[0].split("[")[0]


def environment_rank() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's variables, else SLURM's, else a single process."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"]), int(env.get("SLURM_LOCALID", 0))
    return 0, 1, 0


def init_distributed(device: torch.device | None = None) -> DistributedContext:
    """Initialise the default process group when launched by torchrun or as several SLURM tasks.

    Under SLURM without torchrun, ``MASTER_ADDR`` defaults to the first host of ``SLURM_JOB_NODELIST`` and
    ``MASTER_PORT`` to 29500.
    """
    rank, world_size, local_rank = environment_rank()
    if world_size == 1:
        return DistributedContext()
    if "SLURM_JOB_NODELIST" in os.environ:
        os.environ.setdefault("MASTER_ADDR", _first_host(os.environ["SLURM_JOB_NODELIST"]))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    use_cuda = (device is None or device.type == "cuda") and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, local_rank, backend)


def is_main_process() -> bool:
    """True on rank 0 (or without a process group)."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _all_reduce_sum(value: torch.Tensor | float) -> tuple[torch.Tensor, int]:
    tensor = torch.as_tensor(value, dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        tensor = tensor.to("cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(tensor)
        return tensor, dist.get_world_size()
    return tensor, 1


def reduce_mean(value: torch.Tensor | float) -> float:
    """Mean of a scalar over all ranks (the value itself without a process group)."""
    tensor, world_size = _all_reduce_sum(value)
    return float(tensor / world_size)


def reduce_sum(value: torch.Tensor | float) -> float:
    """Sum of a scalar over all ranks, e.g. of per-rank counts (the value itself without a process group)."""
    return float(_all_reduce_sum(value)[0])


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for without a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wrap_model(
    model: torch.nn.Module, context: DistributedContext, find_unused_parameters: bool = False
) -> torch.nn.Module:
    """Wrap in DistributedDataParallel when running with several processes (device ids on GPU only).

    ``find_unused_parameters`` lets DDP finish a step in which some parameters got no gradient (e.g. a
    mechanism whose branch is skipped for a batch); it costs a graph walk per step, so it is off by default.
    """
    if not context.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    parameter = next(model.parameters(), None)
    on_gpu = parameter is not None and parameter.device.type == "cuda"
    return DistributedDataParallel(model, device_ids=[context.local_rank] if on_gpu else None,
                                   find_unused_parameters=find_unused_parameters)
