"""Exact softmax attention (Vaswani et al., 2017): the fast SDPA path and the explicit path beside it.

Both paths share one mask semantics (see :mod:`core.ops.masks`), so the explicit path is the reference for
the fast one and the source of attention matrices for spectrum analysis.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.ops.masks import causal_and_padding_mask, padding_only_mask


def _attention_mask(key_padding_mask: torch.Tensor | None, causal: bool, n: int, device) -> torch.Tensor | None:
    if causal:
        return causal_and_padding_mask(key_padding_mask, n, device)
    if key_padding_mask is not None:
        return padding_only_mask(key_padding_mask)
    return None


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention through ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        q (torch.Tensor): queries ``[B, H, N, D]``.
        k (torch.Tensor): keys ``[B, H, N, D]``.
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        causal (bool): query i sees keys j <= i.
        dropout_p (float): dropout on the attention weights.
        scale (float, optional): score scale, default ``1/sqrt(D)``.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    if key_padding_mask is None:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal, scale=scale)
    mask = _attention_mask(key_padding_mask, causal, q.shape[-2], q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)


def softmax_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """The explicit row-stochastic attention matrix ``[B, H, N, N]`` with the same mask semantics."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    mask = _attention_mask(key_padding_mask, causal, q.shape[-2], q.device)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1)


def reference_softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Explicit softmax attention ``softmax(q k^T * scale) v`` (the reference for :func:`softmax_attention`)."""
    return torch.matmul(softmax_attention_weights(q, k, key_padding_mask, causal, scale), v)
