"""Exact Gaussian-kernel attention, the "kernelized attention" of Skyformer (Chen et al., NeurIPS 2021,
"Skyformer: Remodel Self-Attention with Gaussian Kernel and Nystrom Method").

Softmax scores factor as ``exp(q.k / sqrt(p)) = exp(|q'|^2 / 2) kappa(q', k') exp(|k'|^2 / 2)`` with
``q' = q / p^{1/4}``, ``k' = k / p^{1/4}`` and the Gaussian kernel ``kappa(a, b) = exp(-|a - b|^2 / 2)``.
Kernelized attention drops the two diagonal factors and the row normalisation: ``out = kappa(Q', K') V``.

The fast path runs through ``scaled_dot_product_attention`` (flash kernels, O(N) memory). It augments
``q~ = [q', -|q'|^2/2, 1]`` and ``k~ = [k', 1, -|k'|^2/2]`` so that ``q~.k~ = -|q' - k'|^2 / 2``, and appends a
"sink" key ``0`` whose value is the unit vector of an extra value column. SDPA's normalised output is then
``(sum_j kappa_j v_j, 1) / (1 + sum_j kappa_j)``, and dividing the value columns by the extra column
recovers ``sum_j kappa_j v_j`` exactly. Query, key and value widths are padded to one common width, which
SDPA's flash kernels require. Every score is <= 0 and the sink scores 0, so nothing overflows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# A padded key's augmented score; exp() of it is exactly 0 in every floating dtype.
_PAD_SCORE = -1.0e4


def gaussian_kernel(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``kappa(s a_i, s b_j) = exp(s^2 (a_i.b_j - |a_i|^2/2 - |b_j|^2/2))`` with ``s = scale``.

    The scale is folded into the smaller operand, so no scaled copy of ``a`` is made.

    Args:
        a (torch.Tensor): ``[..., N, D]``.
        b (torch.Tensor): ``[..., M, D]``.
        scale (float): feature scale ``s``. Default: 1.

    Returns:
        torch.Tensor: ``[..., N, M]``, entries in (0, 1] up to rounding.
    """
    s2 = scale * scale
    logits = torch.matmul(a, b.transpose(-1, -2) * s2)  # [..., N, M]
    # In place: matmul's backward does not need its output, and this halves the peak of an [N, M] temporary.
    logits.sub_((0.5 * s2) * a.pow(2).sum(dim=-1)[..., :, None])
    logits.sub_((0.5 * s2) * b.pow(2).sum(dim=-1)[..., None, :])
    return torch.exp(logits)


def feature_scale(head_dim: int, scale: float | None) -> float:
    """The scale applied to q and k before the Gaussian kernel: ``d^-1/4`` unless given."""
    return head_dim**-0.25 if scale is None else scale


def kernelized_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """``kappa(q * scale, k * scale) v`` through SDPA with a sink key (see the module docstring).

    Args:
        q (torch.Tensor): queries ``[B, H, Nq, D]``.
        k (torch.Tensor): keys ``[B, H, Nk, D]``.
        v (torch.Tensor): values ``[B, H, Nk, Dv]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, Nk]``, True = real token; padded keys get weight 0.
        causal (bool): query i sees keys j <= i (needs Nq == Nk).
        scale (float, optional): feature scale, default ``D^{-1/4}`` (Skyformer hard-codes ``32^{-1/4}``).

    Returns:
        torch.Tensor: ``[B, H, Nq, Dv]`` (no row normalisation).
    """
    scale = feature_scale(q.shape[-1], scale)
    half_s2 = 0.5 * scale * scale
    # Norms from the unscaled inputs, so no scaled copy outlives the concatenation.
    half_q_norm = half_s2 * q.pow(2).sum(dim=-1, keepdim=True)  # [B, H, Nq, 1]
    half_k_norm = half_s2 * k.pow(2).sum(dim=-1, keepdim=True)  # [B, H, Nk, 1]
    q_aug = torch.cat([q * scale, -half_q_norm, torch.ones_like(half_q_norm)], dim=-1)  # [B, H, Nq, D + 2]
    k_aug = torch.cat([k * scale, torch.ones_like(half_k_norm), -half_k_norm], dim=-1)
    # SDPA's flash kernels need equal query/key and value widths: pad the values with zero columns.
    width = max(q_aug.shape[-1], v.shape[-1] + 1)
    v_aug = F.pad(v, (0, width - v.shape[-1]))  # [B, H, Nk, width]; column Dv is the sink's
    k_aug = F.pad(k_aug, (0, width - k_aug.shape[-1]))
    q_aug = F.pad(q_aug, (0, width - q_aug.shape[-1]))
    if key_padding_mask is not None:
        pad = ~key_padding_mask[:, None, :, None]
        pad_key = torch.zeros_like(k_aug[:1, :1, :1])
        pad_key[..., -1] = _PAD_SCORE
        k_aug = torch.where(pad, pad_key, k_aug)
        v_aug = v_aug.masked_fill(pad, 0.0)
    b, h, _, _ = q.shape
    sink_key = k_aug.new_zeros(b, h, 1, k_aug.shape[-1])
    sink_value = v_aug.new_zeros(b, h, 1, v_aug.shape[-1])
    sink_value[..., v.shape[-1]] = 1.0
    # The sink comes first; with a lower-right causal mask query i sees the sink and keys 0..i.
    k_aug = torch.cat([sink_key, k_aug], dim=2)
    v_aug = torch.cat([sink_value, v_aug], dim=2)
    mask = None
    if causal:
        from torch.nn.attention.bias import causal_lower_right  # imports torch._dynamo (1.6 s): only when needed

        mask = causal_lower_right(q.shape[-2], k_aug.shape[-2])
    out = F.scaled_dot_product_attention(q_aug, k_aug, v_aug, attn_mask=mask, scale=1.0)
    dv = v.shape[-1]
    return out[..., :dv] / out[..., dv : dv + 1]


def kernelized_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """The explicit ``[B, H, N, N]`` matrix ``kappa(q * scale, k * scale)``, zero at padded keys (and j > i)."""
    weights = gaussian_kernel(q, k, feature_scale(q.shape[-1], scale))
    if key_padding_mask is not None:
        weights = weights * key_padding_mask[:, None, None, :].to(weights.dtype)
    if causal:
        weights = weights.tril()
    return weights


def reference_kernelized_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    """Explicit ``kappa(Q', K') V`` (the reference for :func:`kernelized_attention` and for Skyformer)."""
    return torch.matmul(kernelized_attention_weights(q, k, key_padding_mask, causal, scale), v)
