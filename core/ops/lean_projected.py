"""Lean positive random-feature self-attention with its q/k/v projections inside the same autograd node.

:func:`projected_lean_attention` computes

    lean_positive_feature_attention(split(x A_q^T + b_q), split(x A_k^T + b_k), split(x A_v^T + b_v), W, c, mask)

(:mod:`core.ops.lean_features`, heads split from the token-major projections) with its output merged back to
``[B, N, D]``. The forward pass is the same. The backward pass goes through the queries and then the keys one chunk
of tokens at a time: a chunk's gradients with respect to its queries, keys and values are written into one reused
``[C, 3D]`` buffer and go straight into the input gradient (``mm``/``addmm_`` into its rows) and into the
projections' weight and bias gradients while the chunk is in cache. As separate nodes, the attention would hand three
``[B, N, D]`` gradients to the projections: three fresh buffers (for long sequences, fresh pages the kernel must
fault in) and three more passes over memory.

Values and gradients are those of the separate nodes (tests compare them in float64).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.ops.lean_features import (
    DEFAULT_CHUNK,
    _chunks,
    _key_chunk_gradients,
    _of_batch,
    _QueryBackward,
    _with_ones,
    _Workspace,
    attend_states,
    key_states,
)
from core.ops.linear import accumulation_dtype


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """``[..., N, H * d]`` -> the ``[..., H, N, d]`` view."""
    return t.unflatten(-1, (heads, -1)).transpose(-3, -2)


def _project_back(x_c, grad_c, weight, grad_x_c, grad_weight, grad_bias, accumulate: bool) -> None:
    """Backward pass of ``y_c = x_c A^T + b`` for one chunk: ``grad_x_c`` (written, or added to when ``accumulate``),
    ``grad_weight`` and ``grad_bias`` (added to); any of them may be None.

    Args:
        x_c (torch.Tensor): ``[C, D_in]``.
        grad_c (torch.Tensor): ``[C, D_out]`` d loss / d y_c (rows may be strided).
        weight (torch.Tensor): ``[D_out, D_in]`` A.
    """
    if grad_x_c is not None:
        if accumulate:
            grad_x_c.addmm_(grad_c, weight)
        else:
            torch.mm(grad_c, weight, out=grad_x_c)
    if grad_weight is not None:
        grad_weight.addmm_(grad_c.t(), x_c)
    if grad_bias is not None:
        grad_bias.add_(grad_c.sum(dim=0))


class _ProjectedLeanAttention(torch.autograd.Function):
    """``(x [B, N, D], A [3D, D], b [3D] or None, W, c, mask, heads, kappa, eps, chunk)`` -> ``[B, N, D]``."""

    @staticmethod
    def forward(ctx, x, proj_weight, proj_bias, weight, bias, mask, heads, kappa, eps, chunk):
        dim = x.shape[-1]
        qkv = F.linear(x, proj_weight, proj_bias)  # [B, N, 3D]
        q, k, v = (_heads(qkv[..., i * dim:(i + 1) * dim], heads) for i in range(3))
        states, tops = key_states(k, v, weight, bias, mask, kappa, chunk)
        ctx.save_for_backward(x, proj_weight, weight, bias, mask, qkv, states, tops)
        ctx.heads, ctx.kappa, ctx.eps, ctx.chunk = heads, kappa, eps, chunk
        ctx.has_proj_bias = proj_bias is not None
        return attend_states(q, states, weight, bias, eps, chunk).flatten(-2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, proj_weight, weight, bias, mask, qkv, states, tops = ctx.saved_tensors
        need_x, need_a, need_b, need_w, need_c = ctx.needs_input_grad[:5]
        (b, n, dim), heads = x.shape, ctx.heads
        grad_x = torch.empty_like(x) if need_x else None
        grad_a = torch.zeros_like(proj_weight) if need_a else None
        grad_b = x.new_zeros(3 * dim) if need_b and ctx.has_proj_bias else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_c = torch.zeros_like(bias) if need_c else None
        rows = min(ctx.chunk, n)
        work = _Workspace(x, heads, rows)
        grad_chunk = x.new_empty(rows, 3 * dim) if need_x or need_a or need_b else None
        grad_out = _heads(grad_out, heads)  # [B, H, N, Dv]
        weight_ones = _with_ones(weight)
        part = [slice(i * dim, (i + 1) * dim) for i in range(3)]

        def project_back(i, span, columns, accumulate):
            """The projections' backward pass for the rows ``span`` of batch element i, output columns ``columns``."""
            grad_rows = grad_chunk[: span.stop - span.start, columns]
            _project_back(x[i, span], grad_rows, proj_weight[columns], None if grad_x is None else grad_x[i, span],
                          None if grad_a is None else grad_a[columns], None if grad_b is None else grad_b[columns],
                          accumulate)

        def chunk_grads(span, columns):
            """Per-head views of the chunk's gradient columns (None when nothing upstream needs them)."""
            return None if grad_chunk is None else _heads(grad_chunk[: span.stop - span.start, columns], heads)

        for i in range(b):
            q, k, v = (_heads(qkv[i, :, p], heads) for p in part)
            w_i, c_i, gw_i, gc_i = (_of_batch(t, i) for t in (weight, bias, grad_w, grad_c))
            queries = _QueryBackward(states[i], w_i, c_i, ctx.eps, gw_i)
            for start, stop in _chunks(n, rows):
                span = slice(start, stop)
                queries.chunk(q[:, span], grad_out[i, :, span], work, chunk_grads(span, part[0]))
                if grad_chunk is not None:
                    project_back(i, span, part[0], accumulate=False)
            grad_state = queries.state_gradient(gc_i)
            keys_values = slice(dim, 3 * dim)
            for start, stop in _chunks(n, rows):
                span = slice(start, stop)
                _key_chunk_gradients(k[:, span], v[:, span], None if mask is None else mask[i, span], grad_state,
                                     _of_batch(weight_ones, i), c_i, tops[i], ctx.kappa, work,
                                     chunk_grads(span, part[1]), chunk_grads(span, part[2]), gw_i, gc_i)
                if grad_chunk is not None:
                    project_back(i, span, keys_values, accumulate=True)
        return grad_x, grad_a, grad_b, grad_w, grad_c, None, None, None, None, None


def projected_lean_attention(
    x: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    num_heads: int,
    kappa: float = 0.5,
    eps: float | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Non-causal normalised GERF-family self-attention of ``x`` through its stacked q/k/v projections.

    Args:
        x (torch.Tensor): ``[B, N, D]``, float32 or float64.
        proj_weight (torch.Tensor): ``[3D, D]`` the query, key and value maps stacked (``torch.cat``).
        proj_bias (torch.Tensor, optional): ``[3D]``.
        weight (torch.Tensor): ``[H, m, d]`` or ``[1, H, m, d]`` folded feature rows (see
            :func:`core.ops.lean_features.lean_positive_feature_attention`), ``d = D / H``.
        bias (torch.Tensor, optional): ``[1, H, 1, m]`` feature row terms.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        num_heads (int): H.
        kappa (float): coefficient of ``||k_j||^2`` in the key exponent.
        eps (float, optional): as in :func:`core.ops.lean_features.lean_positive_feature_attention`.
        chunk_size (int): tokens per chunk of the backward pass.

    Returns:
        torch.Tensor: ``[B, N, D]``, the heads' outputs merged (before the output projection).
    """
    if x.dim() != 3 or proj_weight.shape != (3 * x.shape[-1], x.shape[-1]):
        raise ValueError(f"expected x [B, N, D] and stacked projections [3D, D], got {tuple(x.shape)} and "
                         f"{tuple(proj_weight.shape)}")
    if x.dtype != accumulation_dtype(x.dtype):
        raise ValueError(f"projected_lean_attention computes in the input's dtype; got {x.dtype}, use float32 or "
                         "float64 (or lean_positive_feature_attention, which accumulates in float32)")
    if x.shape[-1] % num_heads or weight.shape[-1] != x.shape[-1] // num_heads:
        raise ValueError(f"feature rows of width {weight.shape[-1]} do not match {num_heads} heads of "
                         f"{x.shape[-1]} / {num_heads}")
    eps = torch.finfo(x.dtype).tiny if eps is None else eps
    mask = None if key_padding_mask is None else key_padding_mask.to(torch.bool)
    return _ProjectedLeanAttention.apply(x, proj_weight, proj_bias, weight, bias, mask, int(num_heads), float(kappa),
                                         float(eps), int(chunk_size))
