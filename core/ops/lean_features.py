"""Memory-lean non-causal positive random-feature attention: features are recomputed in chunks, never stored.

For GERF-family features with one A per head (PosRF, GERF, OPRF), the normalised attention

    out_i = sum_j qf_i . kf_j v_j / (sum_j qf_i . kf_j + eps)
    qf_i = exp(W q_i + c - max_r (W q_i + c)_r),   kf_j = mask_j exp(W k_j + c - kappa ||k_j||^2 - M)

(``W = B s omega`` the folded weight rows, ``c_r = A ||omega_r||^2``, ``kappa = s^2 / 2`` for the softmax kernel and
``s^2`` for the Gaussian one, M one constant per sequence) only needs ``S = sum_j kf_j [v_j, 1]^T``, an
``[m, Dv + 1]`` matrix per head. The autograd function below keeps ``q, k, v`` and S, and rebuilds the feature maps
chunk by chunk in the backward pass, instead of keeping two ``[B, H, N, m]`` feature tensors (and their
exponentials) alive as plain autograd would. The query shift and M cancel in the normalisation, so they carry
no gradient. The key constant M is the maximum over the real keys, found on the fly: S is rescaled whenever a
later chunk raises it (as in online softmax), so the keys are read once in the forward pass.

It computes the same function, with the same gradients, as :func:`core.ops.random_features.positive_attention_features`
followed by :func:`core.ops.random_features.random_feature_attention` (tests compare them in float64).
"""

from __future__ import annotations

import torch

from core.ops.linear import accumulation_dtype

DEFAULT_CHUNK = 1024


def _exponent(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``x W^T + c`` -> ``[B, H, C, m]`` for ``x [B, H, C, d]``, ``weight [(B,) H, m, d]``."""
    e = torch.matmul(x, weight.transpose(-1, -2))
    return e if bias is None else e.add_(bias)


def _key_exponent(k, weight, bias, kappa):
    return _exponent(k, weight, bias).sub_(kappa * k.pow(2).sum(-1, keepdim=True))


def _query_features(q, weight, bias):
    e = _exponent(q, weight, bias)
    return e.sub_(e.amax(dim=-1, keepdim=True)).exp_()


def _chunks(n: int, size: int):
    return [(start, min(start + size, n)) for start in range(0, n, size)]


class _LeanPositiveAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, weight, bias, mask, kappa, eps, chunk):
        n = k.shape[-2]
        batch_heads = torch.broadcast_shapes(q.shape[:-2], weight.shape[:-2])
        state = q.new_zeros(*batch_heads, weight.shape[-2], v.shape[-1] + 1)
        top = q.new_full((*batch_heads, 1, 1), float("-inf"))
        ones = v.new_ones(*v.shape[:-1], 1)
        for start, stop in _chunks(n, chunk):
            e = _key_exponent(k[..., start:stop, :], weight, bias, kappa)
            if mask is not None:
                e.masked_fill_(~mask[:, None, start:stop, None], float("-inf"))
            new_top = torch.maximum(top, e.amax(dim=(-2, -1), keepdim=True))
            seen = torch.isfinite(new_top)  # False while only padding was read
            state.mul_(torch.where(seen, torch.exp(top - new_top), torch.zeros_like(top)))
            shift = torch.where(seen, new_top, torch.zeros_like(top))
            values = torch.cat([v[..., start:stop, :], ones[..., start:stop, :]], dim=-1)
            state.add_(torch.matmul(e.sub_(shift).exp_().transpose(-1, -2), values))
            top = new_top
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        out = q.new_empty(*batch_heads, q.shape[-2], v.shape[-1])
        for start, stop in _chunks(q.shape[-2], chunk):
            qf = _query_features(q[..., start:stop, :], weight, bias)
            both = torch.matmul(qf, state)
            out[..., start:stop, :] = both[..., :-1] / (both[..., -1:] + eps)
        ctx.save_for_backward(q, k, v, weight, bias, mask, state, top)
        ctx.kappa, ctx.eps, ctx.chunk = kappa, eps, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, weight, bias, mask, state, top = ctx.saved_tensors
        kappa, eps, chunk = ctx.kappa, ctx.eps, ctx.chunk
        need_q, need_k, need_v, need_w, need_c = ctx.needs_input_grad[:5]
        grad_q = torch.empty_like(q) if need_q else None
        grad_k = torch.empty_like(k) if need_k else None
        grad_v = torch.empty_like(v) if need_v else None
        grad_w = torch.zeros(*state.shape[:-2], *weight.shape[-2:], dtype=q.dtype, device=q.device) if need_w else None
        grad_c = torch.zeros_like(state[..., :1].transpose(-1, -2)) if need_c else None
        grad_state = torch.zeros_like(state)
        values_t = state.transpose(-1, -2)  # [.., Dv + 1, m]
        for start, stop in _chunks(q.shape[-2], chunk):
            q_c = q[..., start:stop, :]
            qf = _query_features(q_c, weight, bias)
            both = torch.matmul(qf, state)
            den = both[..., -1:] + eps
            out = both[..., :-1] / den
            # a query that sees no real key has the constant output 0: no gradient flows back from it
            g = torch.where(both[..., -1:] > 0, grad_out[..., start:stop, :] / den, 0.0)
            g_den = -(grad_out[..., start:stop, :] * out).sum(-1, keepdim=True) / den
            g_both = torch.cat([g, g_den], dim=-1)  # d loss / d (qf S)
            grad_state.add_(torch.matmul(qf.transpose(-1, -2), g_both))
            g_e = torch.matmul(g_both, values_t).mul_(qf)  # through exp; the row shift carries no gradient
            if need_q:
                grad_q[..., start:stop, :] = torch.matmul(g_e, weight)
            if need_w:
                grad_w.add_(torch.matmul(g_e.transpose(-1, -2), q_c))
            if need_c:
                grad_c.add_(g_e.sum(dim=-2, keepdim=True))
        grad_state_t = grad_state.transpose(-1, -2)
        ones = v.new_ones(*v.shape[:-1], 1)
        for start, stop in _chunks(k.shape[-2], chunk):
            k_c = k[..., start:stop, :]
            kf = _key_exponent(k_c, weight, bias, kappa).sub_(top).exp_()
            if mask is not None:
                kf.masked_fill_(~mask[:, None, start:stop, None], 0.0)
            if need_v:
                grad_v[..., start:stop, :] = torch.matmul(kf, grad_state[..., :-1]).sum_to_size(v[..., start:stop, :].shape)
            values = torch.cat([v[..., start:stop, :], ones[..., start:stop, :]], dim=-1)
            g_e = torch.matmul(values, grad_state_t).mul_(kf)
            if need_k:
                grad_k[..., start:stop, :] = (torch.matmul(g_e, weight)
                                              - (2 * kappa) * k_c * g_e.sum(-1, keepdim=True)).sum_to_size(k_c.shape)
            if need_w:
                grad_w.add_(torch.matmul(g_e.transpose(-1, -2), k_c))
            if need_c:
                grad_c.add_(g_e.sum(dim=-2, keepdim=True))
        if need_w:
            grad_w = grad_w.sum_to_size(weight.shape)
        if need_c:
            grad_c = grad_c.sum_to_size(bias.shape)
        return grad_q, grad_k, grad_v, grad_w, grad_c, None, None, None, None


def lean_positive_feature_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    kappa: float = 0.5,
    eps: float | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Non-causal normalised GERF-family attention without stored feature maps.

    Args:
        q (torch.Tensor): ``[B, H, N, d]`` queries (raw; any scale is folded into ``weight``).
        k (torch.Tensor): ``[B, H, N, d]`` keys.
        v (torch.Tensor): ``[B, H, N, Dv]`` values.
        weight (torch.Tensor): ``[H, m, d]`` or ``[B, H, m, d]`` folded rows ``B s omega_r``.
        bias (torch.Tensor, optional): ``[B or 1, H, 1, m]`` row terms ``A ||omega_r||^2``; None for A = 0.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        kappa (float): coefficient of ``||k_j||^2`` in the key exponent (``s^2 / 2`` softmax, ``s^2`` Gaussian).
        eps (float, optional): added to the denominator; default the accumulation dtype's smallest normal number.
        chunk_size (int): rows per chunk (working memory ``B H chunk m``).

    Returns:
        torch.Tensor: ``[B, H, N, Dv]`` in the dtype of ``v``.
    """
    if q.dim() != 4 or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"expected q, k [B, H, N, d] and v [B, H, N, Dv], got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if weight.shape[-1] != q.shape[-1]:
        raise ValueError(f"weight rows have width {weight.shape[-1]}, queries {q.shape[-1]}")
    acc = accumulation_dtype(q.dtype)
    eps = torch.finfo(acc).tiny if eps is None else eps
    cast = [t.to(acc) if t is not None else None for t in (q, k, v, weight, bias)]
    mask = None if key_padding_mask is None else key_padding_mask.to(torch.bool)
    out = _LeanPositiveAttention.apply(*cast, mask, float(kappa), float(eps), int(chunk_size))
    return out.to(v.dtype)
