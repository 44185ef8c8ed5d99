"""ProbSparse self-attention (Zhou et al., AAAI 2021, "Informer: Beyond Efficient Transformer for Long Sequence
Time-Series Forecasting").

Each query's sparsity ``M(q) = max_j q.k_j / sqrt(d) - mean_j q.k_j / sqrt(d)`` is estimated on a sample of
``U = c ceil(ln L)`` keys; the ``u = c ceil(ln L)`` queries with the largest ``M`` get exact softmax attention
and every other query outputs the mean of the values. L is the number of real tokens of the sequence, so
padding changes neither the counts nor the sample; with ``u = L`` this is exact softmax attention.
"""

from __future__ import annotations

import math

import torch

from core.ops.masks import padding_only_mask
from core.ops.sampling import gather_positions, real_token_positions
from core.ops.softmax import softmax_attention


def probsparse_counts(key_padding_mask: torch.Tensor | None, batch: int, length: int, factor: float, device=None):
    """``min(c ceil(ln L), L)`` (at least 1) per sequence, int64 ``[B]``: both u and the key sample size U."""
    if key_padding_mask is None:
        real = torch.full((batch,), length, device=device)
    else:
        real = key_padding_mask.sum(dim=1)
    real = real.clamp(min=1)
    counts = torch.ceil(factor * torch.ceil(torch.log(real.double()))).long()
    return torch.minimum(counts.clamp(min=1), real)


def sparsity_measure(
    q: torch.Tensor, k_sample: torch.Tensor, sample_valid: torch.Tensor, scale: float
) -> torch.Tensor:
    """``max - mean`` of each query's scaled scores over the sampled keys.

    Args:
        q (torch.Tensor): ``[B, H, N, D]``.
        k_sample (torch.Tensor): sampled keys ``[B, H, U, D]``.
        sample_valid (torch.Tensor): bool ``[B, U]``, which sampled columns count.
        scale (float): score scale.

    Returns:
        torch.Tensor: ``[B, H, N]``.
    """
    scores = torch.matmul(q, k_sample.transpose(-1, -2)) * scale  # [B, H, N, U]
    valid = sample_valid[:, None, None, :]
    peak = scores.masked_fill(~valid, float("-inf")).amax(dim=-1)
    mean = scores.masked_fill(~valid, 0.0).sum(dim=-1) / sample_valid.sum(dim=1).clamp(min=1)[:, None, None]
    return peak - mean


def probsparse_selection(
    q: torch.Tensor,
    k: torch.Tensor,
    key_padding_mask: torch.Tensor | None,
    factor: float,
    random: bool,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The queries that get exact attention.

    Returns:
        tuple: int64 indices ``[B, H, u_max]`` (distinct, largest M first) and bool ``[B, u_max]`` marking the
        first ``u_b`` of sequence b as selected.
    """
    b, _, n, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    counts = probsparse_counts(key_padding_mask, b, n, factor, q.device)
    most = int(counts.max())
    slots = torch.arange(most, device=q.device)[None, :] < counts[:, None]  # [B, most]
    if bool(slots.all()) and most == n:  # every query is selected: no measure needed
        indices = torch.arange(n, device=q.device).expand(b, q.shape[1], n)
        return indices, slots
    positions = real_token_positions(key_padding_mask, b, n, most, random, device=q.device, counts=counts)
    with torch.no_grad():
        measure = sparsity_measure(q, gather_positions(k, positions), slots, scale)
        if key_padding_mask is not None:
            measure = measure.masked_fill(~key_padding_mask[:, None, :], float("-inf"))
        indices = measure.topk(most, dim=-1, sorted=True).indices  # [B, H, most]
    return indices, slots


def probsparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    factor: float = 5.0,
    random: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """ProbSparse attention (non-causal).

    Args:
        q (torch.Tensor): queries ``[B, H, N, D]``.
        k (torch.Tensor): keys ``[B, H, N, D]``.
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        factor (float): c; ``u = U = min(c ceil(ln L), L)``.
        random (bool): sample the keys of the measure uniformly with replacement (training) instead of at the
            stratified quantiles of the real tokens (deterministic).
        scale (float, optional): score scale, default ``1/sqrt(D)``.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    indices, slots = probsparse_selection(q, k, key_padding_mask, factor, random, scale)
    if key_padding_mask is None:
        base = v.mean(dim=-2, keepdim=True)  # [B, H, 1, Dv]
    else:
        weights = key_padding_mask.to(v.dtype)[:, None, :, None]
        base = (v * weights).sum(dim=-2, keepdim=True) / weights.sum(dim=-2, keepdim=True).clamp(min=1)
    selected = softmax_attention(gather_positions_per_head(q, indices), k, v, key_padding_mask, scale=scale)
    selected = torch.where(slots[:, None, :, None], selected, base)  # unselected slots rewrite the base value
    b, h, n, dv = v.shape
    index = indices[..., None].expand(b, h, indices.shape[-1], dv)
    return base.expand(b, h, n, dv).scatter(2, index, selected)


def gather_positions_per_head(t: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``t [B, H, N, D]`` at per-head positions ``indices [B, H, u]`` -> ``[B, H, u, D]``."""
    return torch.gather(t, 2, indices[..., None].expand(*indices.shape, t.shape[-1]))


def probsparse_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    factor: float = 5.0,
    random: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """The explicit ``[B, H, N, N]`` matrix: softmax rows for selected queries, uniform over real keys otherwise."""
    b, h, n, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    indices, slots = probsparse_selection(q, k, key_padding_mask, factor, random, scale)
    real = torch.ones(b, n, dtype=q.dtype, device=q.device) if key_padding_mask is None else key_padding_mask.to(q.dtype)
    uniform = (real / real.sum(dim=1, keepdim=True).clamp(min=1))[:, None, None, :].expand(b, h, n, n)
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if key_padding_mask is not None:
        scores = scores.masked_fill(~padding_only_mask(key_padding_mask), float("-inf"))
    chosen = torch.zeros(b, h, n, dtype=torch.bool, device=q.device)
    chosen.scatter_(2, indices, slots[:, None, :].expand_as(indices))
    return torch.where(chosen[..., None], torch.softmax(scores, dim=-1), uniform)
