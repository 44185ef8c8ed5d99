"""Lean positive random-feature self-attention with its four projections inside the same autograd node.

:func:`projected_lean_attention` computes

    merge(lean_positive_feature_attention(split(x A_q^T + b_q), split(x A_k^T + b_k), split(x A_v^T + b_v), W, c))
        A_o^T + b_o

(:mod:`core.ops.lean_features`; heads split from and merged into token-major ``[B, N, D]`` tensors). The q/k/v
projections are one ``[N, 3D]`` product. The queries are then attended one chunk of tokens at a time, and each
chunk's attention output goes through the output projection while it is in cache, straight into the rows of the
result: the ``[B, N, D]`` attention output is never stored. The backward pass walks the queries and then the keys
in the same chunks: the gradient of a chunk's attention output comes from the output gradient's rows (``mm``), the
output projection's weight gradient from the chunk's attention output rebuilt from the feature weights the query
pass computes anyway (one ``[C, m] x [m, d]`` product per head), and the chunk's gradients with respect to q, k and v
land in one reused ``[C, 3D]`` buffer and go at once into the input gradient and the projections' weight and bias
gradients.

As separate nodes, the attention output would be kept for the output projection's backward pass, and four ``[B, N,
D]`` gradients (of the attention output, q, k and v) would be passed between nodes: fresh buffers (for long
sequences, fresh pages the kernel must fault in) and passes over memory.

Values and gradients are those of the separate nodes (tests compare them in float64). There is no dropout between
the attention and its output projection here: modules with active attention dropout keep separate nodes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.ops.lean_features import (
    DEFAULT_CHUNK,
    _chunks,
    _feature_attention,
    _feature_weights,
    _key_chunk_gradients,
    _of_batch,
    _QueryBackward,
    _with_ones,
    _Workspace,
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
    """``(x [B, N, D], A [3D, D], b [3D], A_o [D_o, D], b_o [D_o], W, c, mask, heads, kappa, eps, chunk)`` ->
    ``[B, N, D_o]``; the biases may be None."""

    @staticmethod
    def forward(ctx, x, proj_weight, proj_bias, out_weight, out_bias, weight, bias, mask, heads, kappa, eps, chunk):
        (b, n, dim), rows = x.shape, min(chunk, x.shape[1])
        qkv = F.linear(x, proj_weight, proj_bias)  # [B, N, 3D]
        q, k, v = (_heads(qkv[..., i * dim:(i + 1) * dim], heads) for i in range(3))
        states, tops, offsets = key_states(k, v, weight, bias, mask, kappa, chunk)
        out = x.new_empty(b, n, out_weight.shape[0])
        work = _Workspace(x, heads, rows)
        attended = x.new_empty(rows, dim)  # one chunk's attention output, token-major
        for i in range(b):
            values, weight_logits, _ = _feature_attention(states[i], _of_batch(weight, i), _of_batch(bias, i), eps)
            for start, stop in _chunks(n, rows):
                chunk_out = attended[: stop - start]
                torch.bmm(_feature_weights(q[i, :, start:stop], weight_logits, work), values,
                          out=_heads(chunk_out, heads))
                if out_bias is None:
                    torch.mm(chunk_out, out_weight.t(), out=out[i, start:stop])
                else:
                    torch.addmm(out_bias, chunk_out, out_weight.t(), out=out[i, start:stop])
        ctx.save_for_backward(x, proj_weight, out_weight, weight, bias, offsets, qkv, states, tops)
        ctx.heads, ctx.kappa, ctx.eps, ctx.chunk = heads, kappa, eps, chunk
        ctx.has_biases = proj_bias is not None, out_bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        x, proj_weight, out_weight, weight, bias, offsets, qkv, states, tops = ctx.saved_tensors
        need_x, need_a, need_b, need_ao, need_bo, need_w, need_c = ctx.needs_input_grad[:7]
        (b, n, dim), heads = x.shape, ctx.heads
        grad_x = torch.empty_like(x) if need_x else None
        grad_a = torch.zeros_like(proj_weight) if need_a else None
        grad_b = x.new_zeros(3 * dim) if need_b and ctx.has_biases[0] else None
        grad_ao = torch.zeros_like(out_weight) if need_ao else None
        grad_bo = x.new_zeros(out_weight.shape[0]) if need_bo and ctx.has_biases[1] else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_c = torch.zeros_like(bias) if need_c else None
        rows = min(ctx.chunk, n)
        work = _Workspace(x, heads, rows)
        grad_chunk = x.new_empty(rows, 3 * dim) if need_x or need_a or need_b else None
        grad_attended = x.new_empty(rows, dim)  # d loss / d (one chunk's attention output), token-major
        attended = x.new_empty(rows, dim) if grad_ao is not None else None
        weight_ones = _with_ones(weight)
        part = [slice(i * dim, (i + 1) * dim) for i in range(3)]

        def project_back(i, span, columns, accumulate):
            """The q/k/v projections' backward pass for the rows ``span`` of batch element i, columns ``columns``."""
            if grad_chunk is not None:
                _project_back(x[i, span], grad_chunk[: span.stop - span.start, columns], proj_weight[columns],
                              None if grad_x is None else grad_x[i, span], None if grad_a is None else grad_a[columns],
                              None if grad_b is None else grad_b[columns], accumulate)

        def chunk_grads(span, columns):
            """Per-head views of the chunk's gradient columns (None when nothing upstream needs them)."""
            return None if grad_chunk is None else _heads(grad_chunk[: span.stop - span.start, columns], heads)

        for i in range(b):
            q, k, v = (_heads(qkv[i, :, p], heads) for p in part)
            w_i, c_i, gw_i, gc_i = (_of_batch(t, i) for t in (weight, bias, grad_w, grad_c))
            queries = _QueryBackward(states[i], w_i, c_i, ctx.eps, gw_i)
            for start, stop in _chunks(n, rows):
                span, grad_y_c = slice(start, stop), grad_y[i, start:stop]
                grad_out_c = torch.mm(grad_y_c, out_weight, out=grad_attended[: stop - start])
                feature_weights = queries.chunk(q[:, span], _heads(grad_out_c, heads), work,
                                                chunk_grads(span, part[0]))
                if grad_ao is not None:  # the chunk's attention output, rebuilt for the output projection
                    chunk_out = attended[: stop - start]
                    torch.bmm(feature_weights, queries.values, out=_heads(chunk_out, heads))
                    grad_ao.addmm_(grad_y_c.t(), chunk_out)
                if grad_bo is not None:
                    grad_bo.add_(grad_y_c.sum(dim=0))
                project_back(i, span, part[0], accumulate=False)
            grad_state = queries.state_gradient(gc_i)
            for start, stop in _chunks(n, rows):
                span = slice(start, stop)
                _key_chunk_gradients(k[:, span], v[:, span], offsets[i, :, span], grad_state,
                                     _of_batch(weight_ones, i), c_i, tops[i], ctx.kappa, work,
                                     chunk_grads(span, part[1]), chunk_grads(span, part[2]), gw_i, gc_i)
                project_back(i, span, slice(dim, 3 * dim), accumulate=True)
        return grad_x, grad_a, grad_b, grad_ao, grad_bo, grad_w, grad_c, None, None, None, None, None


def projected_lean_attention(
    x: torch.Tensor,
    proj_weight: torch.Tensor,
    proj_bias: torch.Tensor | None,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    key_padding_mask: torch.Tensor | None,
    num_heads: int,
    kappa: float = 0.5,
    eps: float | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Non-causal normalised GERF-family self-attention of ``x`` through its q/k/v and output projections.

    Args:
        x (torch.Tensor): ``[B, N, D]``, float32 or float64.
        proj_weight (torch.Tensor): ``[3D, D]`` the query, key and value maps stacked (``torch.cat``).
        proj_bias (torch.Tensor, optional): ``[3D]``.
        out_weight (torch.Tensor): ``[D_out, D]`` the output map.
        out_bias (torch.Tensor, optional): ``[D_out]``.
        weight (torch.Tensor): ``[H, m, d]`` or ``[1, H, m, d]`` folded feature rows (see
            :func:`core.ops.lean_features.lean_positive_feature_attention`), ``d = D / H``.
        bias (torch.Tensor, optional): ``[1, H, 1, m]`` feature row terms.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        num_heads (int): H.
        kappa (float): coefficient of ``||k_j||^2`` in the key exponent.
        eps (float, optional): as in :func:`core.ops.lean_features.lean_positive_feature_attention`.
        chunk_size (int): tokens per chunk of the queries' passes and of the backward pass (the keys' forward pass
            takes chunks twice as long).

    Returns:
        torch.Tensor: ``[B, N, D_out]``.
    """
    if x.dim() != 3 or proj_weight.shape != (3 * x.shape[-1], x.shape[-1]) or out_weight.shape[-1] != x.shape[-1]:
        raise ValueError(f"expected x [B, N, D], stacked projections [3D, D] and an output map [D_out, D], got "
                         f"{tuple(x.shape)}, {tuple(proj_weight.shape)} and {tuple(out_weight.shape)}")
    if x.dtype != accumulation_dtype(x.dtype):
        raise ValueError(f"projected_lean_attention computes in the input's dtype; got {x.dtype}, use float32 or "
                         "float64 (or lean_positive_feature_attention, which accumulates in float32)")
    if x.shape[-1] % num_heads or weight.shape[-1] != x.shape[-1] // num_heads:
        raise ValueError(f"feature rows of width {weight.shape[-1]} do not match {num_heads} heads of "
                         f"{x.shape[-1]} / {num_heads}")
    eps = torch.finfo(x.dtype).tiny if eps is None else eps
    mask = None if key_padding_mask is None else key_padding_mask.to(torch.bool)
    return _ProjectedLeanAttention.apply(x, proj_weight, proj_bias, out_weight, out_bias, weight, bias, mask,
                                         int(num_heads), float(kappa), float(eps), int(chunk_size))
