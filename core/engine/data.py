"""Data loading that resumes exactly and shards across ranks."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from core.engine.distributed import DistributedContext


def make_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    epoch: int = 0,
    context: DistributedContext | None = None,
    drop_last: bool = False,
    **kwargs,
) -> DataLoader:
    """A loader whose order depends only on ``(seed, epoch)`` (so a resumed run sees the same batches) and
    which gives each rank its own shard under DDP.

    Args:
        dataset: any map-style dataset.
        batch_size: per-rank batch size.
        shuffle: shuffle each epoch.
        seed: base seed of the shuffling.
        epoch: the epoch this loader serves.
        context: distributed context (None = single process).
        **kwargs: passed to ``DataLoader`` (``collate_fn``, ``num_workers``, ...).
    """
    if context is not None and context.enabled:
        sampler = DistributedSampler(dataset, context.world_size, context.rank, shuffle=shuffle, seed=seed,
                                     drop_last=drop_last)
        sampler.set_epoch(epoch)
    elif shuffle:
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    # the loader's own generator: iterating never draws from the global RNG (dropout etc. stay reproducible)
    kwargs.setdefault("generator", torch.Generator().manual_seed(seed * 100_003 + epoch + 1))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)
