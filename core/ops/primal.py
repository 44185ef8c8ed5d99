"""Ops of Primal-Attention (Chen et al., NeurIPS 2023, "Primal-Attention: Self-attention through Asymmetric
Kernel SVD in Primal Representation").

Per head, with cosine feature maps phi(x) = x / ||x||:

    e = phi(q) W_e,  r = phi(k) W_r            (projection scores, each [N, s])

where W_e, W_r in R^{p x s} are either data-dependent, W_{e|X} = X~^T W~_e built from n evenly spaced tokens
X~ of the layer input (non-causal form), or plain parameters (causal form, where q and k are first replaced
by their running prefix means). The KSVD objective of one layer is

    J = 1/2 mean ||e Lambda||^2 + 1/2 mean ||r Lambda||^2 - Tr(W~_e^T W~_r),   L_KSVD = J^2

(the official code multiplies the score rows by diag(Lambda) before squaring, i.e. weights by Lambda^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_features(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = x / ||x||_2 over the last dim (the cosine kernel's feature map)."""
    return F.normalize(x, p=2.0, dim=-1)


def evenly_spaced_positions(
    num_samples: int, length: int, key_padding_mask: torch.Tensor | None = None, batch: int = 1
) -> torch.Tensor:
    """Indices of ``num_samples`` evenly spaced tokens, ``[B, n]``.

    Without a mask this is ``torch.linspace(0, length - 1, n, dtype=long)`` for every sequence (the official
    sampling). With a mask the spacing runs over each sequence's real tokens only, so padding never enters the
    sample; with fewer real tokens than samples, tokens repeat.
    """
    device = key_padding_mask.device if key_padding_mask is not None else None
    j = torch.arange(num_samples, device=device)
    denominator = max(num_samples - 1, 1)
    if key_padding_mask is None:
        return (j * (length - 1) // denominator).expand(batch, num_samples)
    real = key_padding_mask.sum(dim=1, keepdim=True)  # (B, 1)
    rank = j[None, :] * (real - 1).clamp(min=0) // denominator  # (B, n)
    # positions of the real tokens first, in order
    order = torch.argsort((~key_padding_mask).to(torch.int8), dim=1, stable=True)
    return torch.gather(order, 1, rank)


def data_dependent_weights(x_heads: torch.Tensor, positions: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """W_{.|X} = X~^T W~ per sample and head.

    Args:
        x_heads (torch.Tensor): layer input split into heads ``[B, H, N, p]``.
        positions (torch.Tensor): sampled token indices ``[B, n]``.
        weight (torch.Tensor): W~ ``[H, n, s]``.

    Returns:
        torch.Tensor: ``[B, H, p, s]``.
    """
    b, h, _, p = x_heads.shape
    index = positions[:, None, :, None].expand(b, h, positions.shape[1], p)
    sampled = torch.gather(x_heads, 2, index)  # (B, H, n, p)
    return torch.matmul(sampled.transpose(-1, -2), weight)


def prefix_mean(x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Running mean over time ``x_bar_t = mean_{i <= t} x_i`` for ``x: [B, H, N, p]``.

    With a mask the mean runs over real tokens only (a padded prefix contributes nothing).
    """
    n = x.shape[2]
    if key_padding_mask is None:
        count = torch.arange(1, n + 1, device=x.device, dtype=x.dtype)[:, None]
        return torch.cumsum(x, dim=2) / count
    weights = key_padding_mask[:, None, :, None].to(x.dtype)
    count = torch.cumsum(weights, dim=2).clamp(min=1.0)
    return torch.cumsum(x * weights, dim=2) / count


def ksvd_energy(scores: torch.Tensor, lambdas: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample ``1/2 mean_{h, n} ||score_{h, n} diag(lambda_h)||^2``.

    Args:
        scores (torch.Tensor): e or r, ``[B, H, N, s]``.
        lambdas (torch.Tensor): Lambda ``[H, s]``.
        key_padding_mask (torch.Tensor, optional): ``[B, N]``; the mean runs over real tokens only.

    Returns:
        torch.Tensor: ``[B]`` in float32 or wider.
    """
    dtype = torch.promote_types(scores.dtype, torch.float32)
    squared = (scores.to(dtype) * lambdas.to(dtype)[None, :, None, :]).pow(2).sum(dim=-1)  # (B, H, N)
    if key_padding_mask is None:
        return 0.5 * squared.mean(dim=(1, 2))
    weights = key_padding_mask[:, None, :].to(dtype)
    count = (weights.sum(dim=2) * squared.shape[1]).squeeze(1).clamp(min=1.0)
    return 0.5 * (squared * weights).sum(dim=(1, 2)) / count


def ksvd_trace(weight_e: torch.Tensor, weight_r: torch.Tensor) -> torch.Tensor:
    """``mean_h Tr(W~_{e,h}^T W~_{r,h})`` for parameters ``[H, n, s]`` (or ``[H, p, s]``)."""
    dtype = torch.promote_types(weight_e.dtype, torch.float32)
    return (weight_e.to(dtype) * weight_r.to(dtype)).sum(dim=(1, 2)).mean()


def ksvd_objective(energy_e: torch.Tensor, energy_r: torch.Tensor, trace: torch.Tensor, reduction: str) -> torch.Tensor:
    """``L_KSVD = (E + R - T)^2`` reduced to a scalar.

    Args:
        energy_e, energy_r (torch.Tensor): per-sample E and R, ``[B]``.
        trace (torch.Tensor): T, a scalar.
        reduction (str): "sample" squares per sample then averages (the time-series, RL and NLP code);
            "batch" averages E and R over the batch first, then squares (the LRA and DeiT code).
    """
    if reduction == "sample":
        return (energy_e + energy_r - trace).pow(2).mean()
    if reduction == "batch":
        return (energy_e.mean() + energy_r.mean() - trace).pow(2)
    raise ValueError(f"ksvd reduction must be 'sample' or 'batch', got {reduction!r}")
