"""Nystromformer attention (Xiong et al., AAAI 2021, "Nystromformer: A Nystrom-Based Algorithm for
Approximating Self-Attention").

With landmark queries ``Q~`` and keys ``K~`` (means of m segments of the sequence) softmax attention is
approximated by ``softmax(Q K~^T / sqrt(d)) pinv(softmax(Q~ K~^T / sqrt(d))) softmax(Q~ K^T / sqrt(d)) V``.
When every token is its own segment this is exact, since ``S pinv(S) S = S``.

Segments are formed over each sequence's real tokens in order (token of rank r among L real tokens falls in
segment ``floor(r m / L)``), so padding, wherever it sits, changes no landmark; for unpadded N divisible by m
these are the usual contiguous segments. When L < m some segments are empty; they are removed from the
softmaxes and given an identity block in the landmark matrix, which removes them from the product.

The two N-sized factors run through ``scaled_dot_product_attention`` (m keys, or m queries), so nothing of
size N x m is stored: memory is O(N d + m^2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core.ops.pinv import newton_schulz_pinv


def segment_ids(key_padding_mask: torch.Tensor | None, batch: int, length: int, num_segments: int, device=None):
    """Segment of every token and which segments hold at least one real token.

    Args:
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        batch (int): B.
        length (int): N.
        num_segments (int): m.

    Returns:
        tuple: int64 ids ``[B, N]`` in ``[0, m)`` (padded tokens get a valid id and weight 0 elsewhere), and the
        token count per segment ``[B, m]`` (real tokens only).
    """
    if key_padding_mask is None:
        ranks = torch.arange(length, device=device).expand(batch, length)
        real = torch.full((batch, 1), length, device=device)
        weights = torch.ones(batch, length, device=device)
    else:
        ranks = key_padding_mask.long().cumsum(dim=1) - 1
        real = key_padding_mask.sum(dim=1, keepdim=True)
        weights = key_padding_mask.float()
    ids = torch.div(ranks.clamp(min=0) * num_segments, real.clamp(min=1), rounding_mode="floor").clamp_(max=num_segments - 1)
    counts = torch.zeros(batch, num_segments, device=ids.device).scatter_add_(1, ids, weights)
    return ids, counts


def segment_means(t: torch.Tensor, ids: torch.Tensor, counts: torch.Tensor, key_padding_mask: torch.Tensor | None):
    """Mean of the real tokens of every segment (0 for an empty segment).

    Args:
        t (torch.Tensor): ``[B, H, N, D]``.
        ids (torch.Tensor): int64 ``[B, N]`` from :func:`segment_ids`.
        counts (torch.Tensor): ``[B, m]`` real tokens per segment.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``.

    Returns:
        torch.Tensor: ``[B, H, m, D]``.
    """
    b, h, n, d = t.shape
    m = counts.shape[1]
    if key_padding_mask is None and n % m == 0:
        # Contiguous equal segments; sum then scale, so the backward is a broadcast rather than a division.
        return t.reshape(b, h, m, n // m, d).sum(dim=3) * (m / n)
    if key_padding_mask is not None:
        t = t.masked_fill(~key_padding_mask[:, None, :, None], 0.0)
    sums = t.new_zeros(b, h, m, d).scatter_add(2, ids[:, None, :, None].expand(b, h, n, d), t)
    return sums / counts.clamp(min=1).to(t.dtype)[:, None, :, None]


def _landmark_matrix(q_landmarks: torch.Tensor, k_landmarks: torch.Tensor, present: torch.Tensor | None, scale: float):
    """``softmax(Q~ K~^T * scale)`` ``[B, H, m, m]`` with an identity block on empty landmarks."""
    scores = torch.matmul(q_landmarks, k_landmarks.transpose(-1, -2)) * scale
    if present is None:
        return torch.softmax(scores, dim=-1)
    scores = scores.masked_fill(~present[:, None, None, :], float("-inf"))
    kernel = torch.softmax(scores, dim=-1)
    both = present[:, None, :, None] & present[:, None, None, :]
    eye = torch.eye(kernel.shape[-1], dtype=kernel.dtype, device=kernel.device)
    return torch.where(both, kernel, eye)


def _present_landmarks(counts: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    """Bool ``[B, m]`` of non-empty segments, or None when all are (a sequence without any real token keeps all)."""
    present = counts > 0
    if bool(present.all()):
        return None
    return present | ~present.any(dim=1, keepdim=True)


def _key_mask(key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
    if key_padding_mask is None:
        return None
    empty = ~key_padding_mask.any(dim=1, keepdim=True)
    return (key_padding_mask | empty)[:, None, None, :]


def nystrom_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    num_landmarks: int,
    key_padding_mask: torch.Tensor | None = None,
    iterations: int = 6,
    inverse: str = "newton_schulz",
    scale: float | None = None,
) -> torch.Tensor:
    """Nystrom approximation of softmax attention with segment-mean landmarks.

    Args:
        q (torch.Tensor): queries ``[B, H, N, D]``.
        k (torch.Tensor): keys ``[B, H, N, D]``.
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        num_landmarks (int): m.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        iterations (int): Newton-Schulz iterations for the m x m pseudo-inverse (6 in the paper).
        inverse (str): ``"newton_schulz"`` (the paper) or ``"exact"`` (``torch.linalg.pinv``).
        scale (float, optional): score scale, default ``1/sqrt(D)``.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    b, _, n, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    ids, counts = segment_ids(key_padding_mask, b, n, num_landmarks, q.device)
    q_landmarks = segment_means(q, ids, counts, key_padding_mask)  # [B, H, m, D]
    k_landmarks = segment_means(k, ids, counts, key_padding_mask)
    present = _present_landmarks(counts, key_padding_mask)
    # softmax(Q~ K^T) V: m queries over the N (real) keys.
    landmark_context = F.scaled_dot_product_attention(
        q_landmarks, k, v, attn_mask=_key_mask(key_padding_mask), scale=scale
    )  # [B, H, m, Dv]
    kernel = _landmark_matrix(q_landmarks, k_landmarks, present, scale)
    work = torch.promote_types(kernel.dtype, torch.float32)  # the iteration needs at least float32
    if inverse == "exact":
        kernel_pinv = torch.linalg.pinv(kernel.to(work))
    elif inverse == "newton_schulz":
        kernel_pinv = newton_schulz_pinv(kernel.to(work), iterations)
    else:
        raise ValueError(f"inverse must be 'newton_schulz' or 'exact', got {inverse!r}")
    context = torch.matmul(kernel_pinv.to(v.dtype), landmark_context)  # [B, H, m, Dv]
    landmark_mask = None if present is None else present[:, None, None, :]
    # softmax(Q K~^T) context: N queries over m landmark keys.
    return F.scaled_dot_product_attention(q, k_landmarks, context, attn_mask=landmark_mask, scale=scale)


def nystrom_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    num_landmarks: int,
    key_padding_mask: torch.Tensor | None = None,
    iterations: int = 6,
    inverse: str = "newton_schulz",
    scale: float | None = None,
) -> torch.Tensor:
    """The explicit ``[B, H, N, N]`` matrix ``F pinv(A) B`` (the reference for :func:`nystrom_attention`).

    Written with explicit softmax matrices and masked fills, independently of the SDPA path.
    """
    b, _, n, d = q.shape
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    ids, counts = segment_ids(key_padding_mask, b, n, num_landmarks, q.device)
    q_landmarks = segment_means(q, ids, counts, key_padding_mask)
    k_landmarks = segment_means(k, ids, counts, key_padding_mask)
    present = _present_landmarks(counts, key_padding_mask)
    left = torch.matmul(q, k_landmarks.transpose(-1, -2)) * scale  # [B, H, N, m]
    if present is not None:
        left = left.masked_fill(~present[:, None, None, :], float("-inf"))
    right = torch.matmul(q_landmarks, k.transpose(-1, -2)) * scale  # [B, H, m, N]
    key_mask = _key_mask(key_padding_mask)
    if key_mask is not None:
        right = right.masked_fill(~key_mask, float("-inf"))
    kernel = _landmark_matrix(q_landmarks, k_landmarks, present, scale)
    kernel_pinv = torch.linalg.pinv(kernel) if inverse == "exact" else newton_schulz_pinv(kernel, iterations)
    return torch.softmax(left, dim=-1) @ kernel_pinv @ torch.softmax(right, dim=-1)
