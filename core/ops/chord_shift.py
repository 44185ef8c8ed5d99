"""The fast path of the PSF-Attn chord product for unpadded sequences (see :mod:`core.ops.chord`).

Without padding every chord link is a shift: link k of row i reads row ``i + 2^(k-1)`` (mod N), or
``i - 2^(k-1)`` in the causal form. A factor times the values is then a sum of products of strided views,
with no index tensor and no gathered copy of the values. Tensors are channel-first (values ``[B, H, C, N]``,
factor nonzeros ``[B, H, K, N]``) so that every update and every reduction over channels runs along contiguous
N, and the sequence is processed in blocks of T positions whose accumulator stays in cache while the K shifted
reads stream past it: the forward pass and the values' gradient are blocked over the positions they write.
"""

from __future__ import annotations

import torch

from core.ops.chord import chord_offsets

_BLOCK_BYTES = 1 << 20  # an accumulator block of about 1 MiB (half of an L2 cache)


def _pairs(start: int, stop: int, shift: int, length: int, wrap: bool) -> list[tuple[slice, slice]]:
    """Slice pairs ``(i, j)`` covering ``i`` in ``[start, stop)`` with ``j = i + shift`` (mod N when ``wrap``).

    Without ``wrap``, positions whose ``j`` falls outside ``[0, N)`` are left out.
    """
    if not wrap:
        lo, hi = max(start, -shift), min(stop, length - shift)
        return [(slice(lo, hi), slice(lo + shift, hi + shift))] if lo < hi else []
    first = (start + shift) % length
    split = min(stop, start + length - first)  # where j wraps to 0
    pairs = [(slice(start, split), slice(first, first + split - start))]
    if split < stop:
        pairs.append((slice(split, stop), slice(0, stop - split)))
    return pairs


def _block_size(v: torch.Tensor, block_size: int | None) -> int:
    if block_size is not None:
        return block_size
    per_position = v[..., :1].numel() * v.element_size()
    return max(64, _BLOCK_BYTES // max(per_position, 1))


class _ShiftMix(torch.autograd.Function):
    """``base + W v`` for one unpadded chord factor, blocked over the positions written."""

    @staticmethod
    def forward(ctx, weights, v, base, offsets, causal, block):
        n = v.shape[-1]
        sign = -1 if causal else 1
        out = torch.empty_like(v)
        for start in range(0, n, block):
            rows = slice(start, min(start + block, n))
            # link 0 is the self link: starting from it spares a zero fill and a separate residual add
            if base is None:
                torch.mul(weights[..., :1, rows], v[..., rows], out=out[..., rows])
            else:
                torch.addcmul(base[..., rows], weights[..., :1, rows], v[..., rows], out=out[..., rows])
            for link, offset in enumerate(offsets[1:], start=1):
                for i, j in _pairs(rows.start, rows.stop, sign * offset, n, wrap=not causal):
                    out[..., i].addcmul_(weights[..., link : link + 1, i], v[..., j])
        ctx.save_for_backward(weights, v)
        ctx.offsets, ctx.causal, ctx.block = offsets, causal, block
        return out

    @staticmethod
    def backward(ctx, grad_out):
        weights, v = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        n, block, sign = v.shape[-1], ctx.block, (-1 if ctx.causal else 1)
        grad_weights = grad_v = None
        if ctx.needs_input_grad[0]:  # blocked over rows i: dW[k, i] = <g_i, v_j>
            grad_weights = torch.zeros_like(weights)
            for start in range(0, n, block):
                for link, offset in enumerate(ctx.offsets):
                    for i, j in _pairs(start, min(start + block, n), sign * offset, n, wrap=not ctx.causal):
                        torch.sum(grad_out[..., i] * v[..., j], dim=-2, out=grad_weights[..., link, i])
        if ctx.needs_input_grad[1]:  # blocked over columns j: dv_j += W[k, i] g_i
            grad_v = torch.zeros_like(v)
            for start in range(0, n, block):
                for link, offset in enumerate(ctx.offsets):
                    for j, i in _pairs(start, min(start + block, n), -sign * offset, n, wrap=not ctx.causal):
                        grad_v[..., j].addcmul_(weights[..., link : link + 1, i], grad_out[..., i])
        grad_base = grad_out if ctx.needs_input_grad[2] else None
        return grad_weights, grad_v, grad_base, None, None, None


def shift_product(
    factors: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    residual: bool = True,
    block_size: int | None = None,
) -> torch.Tensor:
    """The chord product ``V <- W^(m) V (+ V_0)`` of an unpadded sequence, with shifted views instead of gathers.

    Args:
        factors (torch.Tensor): nonzeros of the M factors, ``[M, B, H, N, K]``, link k at offset ``2^(k-1)``.
        v (torch.Tensor): initial values ``[B, H, N, C]``.
        causal (bool): links look back and stop at the first token.
        residual (bool): add V_0 after every factor.
        block_size (int, optional): T, positions per block; default: about 1 MiB of accumulator.

    Returns:
        torch.Tensor: ``[B, H, N, C]``, equal to :func:`core.ops.chord.chord_product` with
        ``chord_indices(K, N, None, causal)``.
    """
    offsets = chord_offsets(factors.shape[-1])
    weights = factors.to(v.dtype).transpose(-1, -2).contiguous()  # (M, B, H, K, N)
    first = v.transpose(-1, -2).contiguous()  # (B, H, C, N)
    block = _block_size(first, block_size)
    if block < 1:
        raise ValueError(f"block_size must be >= 1, got {block}")
    out = first
    for factor in weights:
        out = _ShiftMix.apply(factor, out, first if residual else None, offsets, causal, block)
    return out.transpose(-1, -2)
