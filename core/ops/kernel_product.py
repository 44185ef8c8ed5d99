"""``kappa(A', B') V`` for a long and a short side, chunked along the long side, recomputed in the backward.

Skyformer's two N-sized factors (Chen et al., NeurIPS 2021) are Gaussian-kernel products with m landmarks on
one side. Storing the ``[N, m]`` kernel for the backward costs O(N m) memory; this autograd function keeps only
its inputs and recomputes the kernel chunk by chunk, so the extra memory is one chunk (O(N d + m * chunk)).

With ``s`` the scale and ``t_ij = s^2 (a_i.b_j - |a_i|^2/2 - |b_j|^2/2)``, ``P = exp(t) * w_j`` (``w`` = 0/1 key
weights) and ``out = P V``, the gradients are ``dV = P^T dO``, ``dT = (dO V^T) * P``,
``dA = s^2 (dT B - rowsum(dT) * A)`` and ``dB = s^2 (dT^T A - colsum(dT) * B)``.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

# Elements of one [B, H, rows, cols] kernel chunk (16 MiB in float32).
_CHUNK_ELEMENTS = 1 << 22


def _kernel_chunk(a, b, half_a_norm, half_b_norm, weights):
    """``exp(s^2 a.b - s^2|a|^2/2 - s^2|b|^2/2) * w`` of shape ``[B, H, rows, cols]``; ``s^2`` is already in a or b."""
    kernel = torch.matmul(a, b.transpose(-1, -2))
    kernel.sub_(half_a_norm)  # [B, H, rows, 1]
    kernel.sub_(half_b_norm)  # [B, H, 1, cols]
    kernel.exp_()
    if weights is not None:
        kernel.mul_(weights[:, None, None, :])
    return kernel


def _slices(a: torch.Tensor, b: torch.Tensor) -> tuple[bool, list[slice]]:
    """Chunk along the longer side; returns (along_a, slices)."""
    along_a = a.shape[-2] >= b.shape[-2]
    long, short = (a.shape[-2], b.shape[-2]) if along_a else (b.shape[-2], a.shape[-2])
    per_row = max(1, a.shape[:-2].numel() * short)
    step = max(1, min(long, _CHUNK_ELEMENTS // per_row))
    return along_a, [slice(i, min(i + step, long)) for i in range(0, long, step)]


def _half_norms(a: torch.Tensor, b: torch.Tensor, s2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``s^2 |a_i|^2 / 2`` as ``[B, H, Na, 1]`` and ``s^2 |b_j|^2 / 2`` as ``[B, H, 1, Nb]``."""
    # a norm reduction reads each row once, without an [N, d] squared temporary
    half_a = torch.linalg.vector_norm(a, dim=-1, keepdim=True).square_().mul_(0.5 * s2)
    half_b = torch.linalg.vector_norm(b, dim=-1).square_().mul_(0.5 * s2)[..., None, :]
    return half_a, half_b


class _GaussianKernelProduct(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, v, scale, weights):
        s2 = scale * scale
        half_a, half_b = _half_norms(a, b, s2)
        along_a, slices = _slices(a, b)
        if along_a:  # a is long: chunk its rows, s^2 rides on the short b
            b_scaled = b * s2
            out = v.new_empty(*torch.broadcast_shapes(a.shape[:-2], v.shape[:-2]), a.shape[-2], v.shape[-1])
            for part in slices:
                kernel = _kernel_chunk(a[..., part, :], b_scaled, half_a[..., part, :], half_b, weights)
                torch.matmul(kernel, v, out=out[..., part, :])
        else:  # b is long: chunk its rows and accumulate, s^2 rides on the short a
            a_scaled = a * s2
            out = None
            for part in slices:
                w = None if weights is None else weights[:, part]
                kernel = _kernel_chunk(a_scaled, b[..., part, :], half_a, half_b[..., part], w)
                term = torch.matmul(kernel, v[..., part, :])
                out = term if out is None else out.add_(term)
        ctx.save_for_backward(a, b, v, weights, half_a, half_b)
        ctx.s2 = s2
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        a, b, v, weights, half_a, half_b = ctx.saved_tensors
        s2 = ctx.s2
        along_a, slices = _slices(a, b)
        # the chunked side's gradient is written chunk by chunk (disjoint rows); the short side's accumulates
        grad_a = torch.empty_like(a) if along_a else torch.zeros_like(a)
        grad_b = torch.zeros_like(b) if along_a else torch.empty_like(b)
        grad_v = torch.zeros_like(v) if along_a else torch.empty_like(v)
        short_scaled = b * s2 if along_a else a * s2
        for part in slices:
            if along_a:
                rows, cols, w = part, slice(None), weights
                a_c, b_c = a[..., rows, :], short_scaled  # b_c carries s^2
            else:
                rows, cols = slice(None), part
                w = None if weights is None else weights[:, part]
                a_c, b_c = short_scaled, b[..., cols, :]  # a_c carries s^2
            g_c, v_c = grad_out[..., rows, :], v[..., cols, :]
            kernel = _kernel_chunk(a_c, b_c, half_a[..., rows, :], half_b[..., cols], w)
            v_grad = torch.matmul(kernel.transpose(-1, -2), g_c)
            if along_a:
                grad_v += v_grad
            else:
                grad_v[..., cols, :] = v_grad
            # s^2 dL/dt, [B, H, rows, cols]; then dA = dT' B - rowsum(dT') A and dB = dT'^T A - colsum(dT') B.
            d_logits = torch.matmul(g_c, v_c.transpose(-1, -2)).mul_(kernel).mul_(s2)
            a_raw, b_raw = a[..., rows, :], b[..., cols, :]
            a_grad = torch.matmul(d_logits, b_raw).sub_(d_logits.sum(dim=-1, keepdim=True) * a_raw)
            b_grad = torch.matmul(d_logits.transpose(-1, -2), a_raw).sub_(d_logits.sum(dim=-2)[..., None] * b_raw)
            if along_a:
                grad_a[..., rows, :] = a_grad
                grad_b += b_grad
            else:
                grad_a += a_grad
                grad_b[..., cols, :] = b_grad
        return grad_a, grad_b, grad_v, None, None


def gaussian_kernel_product(
    a: torch.Tensor, b: torch.Tensor, v: torch.Tensor, scale: float, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``kappa(s a, s b) v`` without storing the kernel; ``kappa(x, y) = exp(-|x - y|^2 / 2)``, ``s = scale``.

    Args:
        a (torch.Tensor): rows ``[B, H, Na, D]`` (queries, or landmarks).
        b (torch.Tensor): rows ``[B, H, Nb, D]`` (landmarks, or keys).
        v (torch.Tensor): values ``[B, H, Nb, Dv]``.
        scale (float): feature scale ``s``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, Nb]``; False columns get weight 0.

    Returns:
        torch.Tensor: ``[B, H, Na, Dv]``.
    """
    weights = None if key_padding_mask is None else key_padding_mask.to(a.dtype)
    return _GaussianKernelProduct.apply(a, b, v, float(scale), weights)
