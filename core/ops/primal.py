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


def data_dependent_weights(
    x: torch.Tensor, positions: torch.Tensor, weights: torch.Tensor, num_heads: int
) -> torch.Tensor:
    """W_{.|X} = X~^T W~ per sample and head, for several W~ side by side (e.g. ``cat([W~_e, W~_r], -1)``).

    The sampled tokens are whole rows of ``x``, taken with one ``index_select`` (its backward is a row-wise
    ``index_add``), and every W~ is applied in one batched product.

    Args:
        x (torch.Tensor): layer input ``[B, N, D]``.
        positions (torch.Tensor): sampled token indices ``[B, n]``.
        weights (torch.Tensor): W~ ``[H, n, s]``.
        num_heads (int): H; the head width is p = D / H.

    Returns:
        torch.Tensor: ``[B, H, p, s]``.
    """
    b, length, d = x.shape
    samples = positions.shape[1]
    rows = (positions + torch.arange(b, device=positions.device)[:, None] * length).reshape(-1)  # (B n,)
    sampled = x.reshape(b * length, d).index_select(0, rows)  # (B n, D)
    sampled = sampled.view(b, samples, num_heads, d // num_heads).permute(0, 2, 3, 1)  # (B, H, p, n)
    return torch.matmul(sampled, weights)


def prefix_mean(x: torch.Tensor, key_padding_mask: torch.Tensor | None = None, dim: int = 2) -> torch.Tensor:
    """Running mean over time ``x_bar_t = mean_{i <= t} x_i``.

    Args:
        x (torch.Tensor): ``[B, H, N, p]`` with ``dim=2``, or token-major ``[B, N, H, p]`` with ``dim=1``.
        key_padding_mask (torch.Tensor, optional): ``[B, N]``; the mean runs over real tokens only.
        dim (int): the time dimension, 1 or 2.
    """
    if dim not in (1, 2):
        raise ValueError(f"prefix_mean expects the time dim at 1 or 2, got {dim}")
    n = x.shape[dim]
    shape = [1] * x.dim()
    shape[dim] = n
    if key_padding_mask is None:
        count = torch.arange(1, n + 1, device=x.device, dtype=x.dtype).view(shape)
        return torch.cumsum(x, dim=dim) / count
    shape[0] = x.shape[0]
    weights = key_padding_mask.to(x.dtype).view(shape)
    count = torch.cumsum(weights, dim=dim).clamp(min=1.0)
    return torch.cumsum(x * weights, dim=dim) / count


class _KsvdEnergy(torch.autograd.Function):
    """Per-sample weighted mean of ``1/2 sum_s (score_s lambda_s)^2`` that saves no new activations."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, lambdas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        # scores (B, N, H, s) in the accumulation dtype; weights (B, N) sum to 1 per sample
        squared = (scores.pow(2) * lambdas.pow(2)).sum(dim=-1)  # (B, N, H)
        ctx.save_for_backward(scores, lambdas, weights)
        return 0.5 * (squared.sum(dim=2) * weights).sum(dim=1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        scores, lambdas, weights = ctx.saved_tensors
        coef = (grad[:, None] * weights)[:, :, None, None]  # (B, N, 1, 1)
        grad_scores = scores * lambdas.pow(2) * coef if ctx.needs_input_grad[0] else None
        grad_lambdas = None
        if ctx.needs_input_grad[1]:
            grad_lambdas = (scores.pow(2) * coef).sum(dim=(0, 1)) * lambdas
        return grad_scores, grad_lambdas, None


def ksvd_energy(scores: torch.Tensor, lambdas: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample ``1/2 mean_{h, n} ||score_{n, h} diag(lambda_h)||^2``.

    Args:
        scores (torch.Tensor): e or r, token-major ``[B, N, H, s]``.
        lambdas (torch.Tensor): Lambda ``[H, s]``.
        key_padding_mask (torch.Tensor, optional): ``[B, N]``; the mean runs over real tokens only.

    Returns:
        torch.Tensor: ``[B]`` in float32 or wider.
    """
    dtype = torch.promote_types(scores.dtype, torch.float32)
    b, n, h, _ = scores.shape
    if key_padding_mask is None:
        weights = torch.full((b, n), 1.0 / (n * h), dtype=dtype, device=scores.device)
    else:
        real = key_padding_mask.to(dtype)
        weights = real / (real.sum(dim=1, keepdim=True).clamp(min=1.0) * h)
    return _KsvdEnergy.apply(scores.to(dtype), lambdas.to(dtype), weights)


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


def _head_major_features(q: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """phi(q) = q / ||q|| written head-major, ``(B, H, N, p)`` for token-major ``q (B, N, H, p)``: batched products
    read it as it is (a token-major phi(q) would be copied by ``matmul`` first)."""
    b, n, h, p = q.shape
    return torch.div(q.transpose(1, 2), norm.transpose(1, 2), out=q.new_empty(b, h, n, p))


def _cosine_scores_forward(q: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    norm = q.norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)  # (B, N, H, 1)
    scores = torch.matmul(_head_major_features(q, norm), weight)  # (B, H, N, s)
    return scores.transpose(1, 2).contiguous(), norm  # (B, N, H, s)


def _cosine_scores_backward(q, norm, weight, grad_scores, need_q: bool, need_weight: bool, overwrite_q: bool = False):
    # (B, N, H, p); head-major memory when q is kept: the weight gradient's product reads it without a copy
    features = q.div_(norm) if overwrite_q else _head_major_features(q, norm).transpose(1, 2)
    grad_weight = grad_q = None
    if need_weight:
        grad_weight = torch.matmul(features.permute(0, 2, 3, 1), grad_scores.transpose(1, 2))  # (B, H, p, s)
        if weight.dim() == 3:
            grad_weight = grad_weight.sum(dim=0)
    if need_q:
        w = weight if weight.dim() == 4 else weight.unsqueeze(0)
        grad_features = torch.matmul(grad_scores.transpose(1, 2), w.transpose(-1, -2)).transpose(1, 2)
        radial = (features * grad_features).sum(dim=-1, keepdim=True) * (norm > _NORM_EPS)
        # in place: (grad_features - features * radial) / norm, without more N x D temporaries
        grad_q = grad_features.contiguous().addcmul_(features, radial, value=-1.0).div_(norm)
    return grad_q, grad_weight


class _ProjectedCosineScores(torch.autograd.Function):
    """``(phi(x A_q^T + b_q) W_e, phi(x A_k^T + b_k) W_r)`` per head. By default it saves only x and the
    parameters: the projections and phi are recomputed in backward (two more ``N x D x D`` products). With
    ``save_projections`` the projections are kept instead (``2 B N D`` more floats, faster for short inputs).
    The input gradient is accumulated in one buffer."""

    @staticmethod
    def forward(ctx, x, q_weight, q_bias, weight_e, k_weight, k_bias, weight_r, num_heads: int,
                save_projections: bool = False):
        b, n, d = x.shape
        outputs, projections = [], []
        for proj_weight, proj_bias, weight in ((q_weight, q_bias, weight_e), (k_weight, k_bias, weight_r)):
            q = F.linear(x, proj_weight, proj_bias).view(b, n, num_heads, d // num_heads)
            outputs.append(_cosine_scores_forward(q, weight)[0])
            if save_projections:
                projections.append(q)
            del q
        ctx.num_heads = num_heads
        ctx.save_for_backward(x, q_weight, q_bias, weight_e, k_weight, k_bias, weight_r, *projections)
        return outputs[0], outputs[1]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_e, grad_r):
        x, *params = ctx.saved_tensors
        params, projections = params[:6], params[6:]
        b, n, d = x.shape
        x2d = x.reshape(b * n, d)
        grads: list[torch.Tensor | None] = [None] * 7
        grad_x = None
        for branch, grad_scores in enumerate((grad_e, grad_r)):
            proj_weight, proj_bias, weight = params[3 * branch : 3 * branch + 3]
            need = ctx.needs_input_grad[1 + 3 * branch : 4 + 3 * branch]
            need_proj = ctx.needs_input_grad[0] or need[0] or need[1]
            if projections:
                q = projections[branch]
            else:
                q = F.linear(x, proj_weight, proj_bias).view(b, n, ctx.num_heads, d // ctx.num_heads)
            norm = q.norm(dim=-1, keepdim=True).clamp_min(_NORM_EPS)
            grad_q, grads[3 + 3 * branch] = _cosine_scores_backward(
                q, norm, weight, grad_scores, need_proj, need[2], overwrite_q=not projections
            )
            del q
            if not need_proj:
                continue
            grad_q = grad_q.reshape(b * n, d)
            if ctx.needs_input_grad[0]:
                if grad_x is None:
                    grad_x = torch.matmul(grad_q, proj_weight)
                else:
                    grad_x.addmm_(grad_q, proj_weight)
            if need[0]:
                grads[1 + 3 * branch] = torch.matmul(grad_q.t(), x2d)
            if proj_bias is not None and need[1]:
                grads[2 + 3 * branch] = grad_q.sum(dim=0)
            del grad_q
        grads[0] = None if grad_x is None else grad_x.view(b, n, d)
        return (*grads, None, None)


class _CosineScores(torch.autograd.Function):
    """``phi(q) W`` per head, saving only q (phi(q) is recomputed in backward to save memory)."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        scores, norm = _cosine_scores_forward(q, weight)
        ctx.save_for_backward(q, norm, weight)
        return scores

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_scores: torch.Tensor):
        q, norm, weight = ctx.saved_tensors
        return _cosine_scores_backward(q, norm, weight, grad_scores, ctx.needs_input_grad[0], ctx.needs_input_grad[1])


_NORM_EPS = 1e-12


def cosine_scores(q: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Projection scores ``phi(q) W`` with ``phi(q) = q / ||q||``, memory-lean.

    Args:
        q (torch.Tensor): queries or keys in token-major layout ``[B, N, H, p]``.
        weight (torch.Tensor): ``[B, H, p, s]`` (data-dependent) or ``[H, p, s]`` (parameters).

    Returns:
        torch.Tensor: ``[B, N, H, s]``; equal to ``normalize(q) @ W`` per head.
    """
    return _CosineScores.apply(q, weight)


def projected_cosine_scores(
    x: torch.Tensor,
    q_proj: torch.nn.Linear,
    weight_e: torch.Tensor,
    k_proj: torch.nn.Linear,
    weight_r: torch.Tensor,
    num_heads: int,
    save_projections: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Primal scores ``e = phi(q_proj(x)) W_e`` and ``r = phi(k_proj(x)) W_r``.

    Args:
        x (torch.Tensor): layer input ``[B, N, D]``.
        q_proj, k_proj (nn.Linear): the query and key projections ``D -> D``.
        weight_e, weight_r (torch.Tensor): ``[B, H, p, s]`` or ``[H, p, s]``.
        num_heads (int): H.
        save_projections (bool): keep q and k (``[B, N, D]`` each) for backward instead of recomputing them
            from x: less time, more memory. Default: False (only x is kept).

    Returns:
        tuple: e and r, each ``[B, N, H, s]`` (float32 or wider under autocast, which the fused function does not
        follow: it then runs with autocast off on inputs cast to float32, the casts recorded by autograd).
    """
    args = (x, q_proj.weight, q_proj.bias, weight_e, k_proj.weight, k_proj.bias, weight_r)
    if not torch.is_autocast_enabled(x.device.type):
        return _ProjectedCosineScores.apply(*args, num_heads, save_projections)
    dtype = torch.promote_types(x.dtype, torch.float32)
    with torch.autocast(x.device.type, enabled=False):
        args = tuple(None if t is None else t.to(dtype) for t in args)
        return _ProjectedCosineScores.apply(*args, num_heads, save_projections)
