"""Positions sampled among each sequence's real tokens (landmarks of Skyformer, key samples of Informer).

Upstream Skyformer draws ``floor(u * valid_len)`` for uniform ``u``, which assumes the real tokens form a
prefix; here the r-th real token is looked up wherever it sits, so any padding pattern works. Random draws
serve training; the stratified draw ``u = (i + 1/2) / count`` is deterministic, so evaluation is
reproducible and a sample's positions depend only on its own real tokens.
"""

from __future__ import annotations

import torch


def real_token_positions(
    key_padding_mask: torch.Tensor | None,
    batch: int,
    length: int,
    count: int,
    random: bool,
    device: torch.device | None = None,
    generator: torch.Generator | None = None,
    counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """Draw ``count`` positions per sequence among its real tokens (with replacement when random).

    Args:
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token; None = all real.
        batch (int): B.
        length (int): N.
        count (int): positions per sequence.
        random (bool): uniform draws with replacement (True) or the stratified quantiles ``(i + 1/2) / count``
            of the real tokens (False; every real token is taken once when ``count`` equals their number).
        device (torch.device, optional): device of the result when there is no mask.
        generator (torch.Generator, optional): for the random draws.
        counts (torch.Tensor, optional): int ``[B]``, a per-sequence count <= ``count`` for the stratified draw;
            sequence b's first ``counts[b]`` positions are its own quantiles (the rest are to be ignored).

    Returns:
        torch.Tensor: int64 ``[B, count]``, positions in ``[0, N)``, increasing for the stratified draw. A
        sequence without real tokens gets position 0.
    """
    if count <= 0:
        raise ValueError(f"count must be positive, got {count}")
    device = key_padding_mask.device if key_padding_mask is not None else device
    if random:
        fractions = torch.rand(batch, count, device=device, generator=generator, dtype=torch.float64)
    else:
        per_sequence = count if counts is None else counts.to(device=device, dtype=torch.float64).clamp(min=1)[:, None]
        fractions = ((torch.arange(count, device=device, dtype=torch.float64) + 0.5) / per_sequence).expand(batch, count)
    if key_padding_mask is None:
        return (fractions * length).long().clamp_(0, length - 1)
    real = key_padding_mask.sum(dim=1, keepdim=True)  # [B, 1]
    ranks = (fractions * real).long().clamp_(min=0)
    ranks = torch.minimum(ranks, (real - 1).clamp(min=0))
    # Real positions first, in increasing order (a stable sort of the padding indicator).
    order = torch.argsort((~key_padding_mask).to(torch.int8), dim=1, stable=True)
    return torch.gather(order, 1, ranks)


def gather_positions(t: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Rows of per-head tensors at per-sequence positions.

    Args:
        t (torch.Tensor): ``[B, H, N, D]``.
        positions (torch.Tensor): int64 ``[B, M]``.

    Returns:
        torch.Tensor: ``[B, H, M, D]``.
    """
    b, h, _, d = t.shape
    index = positions[:, None, :, None].expand(b, h, positions.shape[1], d)
    return torch.gather(t, 2, index)
