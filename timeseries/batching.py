"""Mini-batches of padded series, trimmed to the longest series in each batch.

Every layer of the classifier works per step except attention, which honours the padding mask, so cutting a
batch to its longest real series changes no output (the flatten head treats the missing steps as the zeros
they would be). Grouping series of similar length (``bucket_pool``) then removes most padding from training
batches; evaluation batches are sorted by length, which changes nothing but the cost.
"""

from __future__ import annotations

import torch

from timeseries.data import SeriesSplit


def training_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator, bucket_pool: int = 0
) -> list[torch.Tensor]:
    """Shuffled index batches for one epoch.

    Args:
        lengths: ``(M,)`` real steps per series.
        batch_size: series per batch (the last batch may be smaller).
        generator: the source of randomness (seeded per epoch for exact resumption).
        bucket_pool: 0 for plain shuffled batches (the original code); k > 0 sorts each pool of k shuffled
            batches by length before cutting it into batches, then shuffles the batch order (bucketing).

    Returns:
        list of int64 index tensors.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(len(lengths), generator=generator)
    if bucket_pool <= 0:
        return list(order.split(batch_size))
    batches = []
    for pool in order.split(batch_size * bucket_pool):
        pool = pool[torch.argsort(lengths[pool], stable=True)]
        batches.extend(pool.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator)
    return [batches[i] for i in shuffle]


def evaluation_batches(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Index batches over series sorted by length (results do not depend on the order)."""
    return list(torch.argsort(lengths, stable=True).split(batch_size))


def gather(
    split: SeriesSplit, index: torch.Tensor, device: torch.device, trim: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Values ``(B, N, C)``, mask ``(B, N)`` and labels ``(B,)`` of a batch, on ``device``.

    With ``trim`` N is the longest series in the batch, otherwise the split's padded length L.
    """
    lengths = split.lengths[index]
    steps = int(lengths.max()) if trim else split.values.shape[1]
    values = split.values[index, :steps]
    mask = torch.arange(steps)[None, :] < lengths[:, None]
    return values.to(device, non_blocking=True), mask.to(device, non_blocking=True), split.labels[index].to(device)
