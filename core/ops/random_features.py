"""Random-feature estimators of the softmax and Gaussian kernels, and attention through them.

Inputs are already scaled, ``x = q / d^{1/4}`` and ``y = k / d^{1/4}``, so the two target kernels are

    softmax:  K(x, y) = exp(x . y)              (= exp(q . k / sqrt(d)), softmax attention after normalisation)
    gaussian: K(x, y) = exp(-||x - y||^2 / 2)   (Skyformer's kernel, normalised over keys here)

and a component function f with rows omega_r of a weight matrix (see :mod:`core.ops.feature_weights`) gives
``E[f(x) . f(y)] = K(x, y)``. The GERF family (Likhosherstov et al., 2022, "Chefs' Random Tables:
Non-Trigonometric Random Features") is

    f_r(x) = m^{-1/2} D exp(A ||omega_r||^2 + B omega_r . x - ||x||^2 / 2 [- ||x||^2 / 2 for gaussian]),
    B = sqrt(1 - 4A),  D = (1 - 4A)^{d / 4},  A < 1/8 (finite variance),

with ``posrf`` A = 0 (FAVOR+, Choromanski et al., 2021, "Rethinking Attention with Performers"), ``oprf`` the
variance-minimising A for the data's mean ``||x_i + y_j||^2``, ``gerf`` a learned A and ``saderf`` (Likhosherstov
et al., 2023, "Dense-Exponential Random Features") queries ``x Psi`` and keys ``y Psi^{-1}`` first, Psi diagonal
with ``psi_l = (mean_j y_jl^2 / mean_i x_il^2)^{1/4}`` (x . y is unchanged), then the OPRF choice of A.
``trigrf`` is the random Fourier map ``m^{-1/2} [cos(W x), sin(W x)]`` (times ``exp(||x||^2 / 2)`` for softmax).

Attention features drop every per-query factor (they cancel in the normalisation), stabilise queries by their own
row maximum and keys by one constant per sequence: the maximum over the sequence's real keys (non-causal) or, in
causal mode, a data-independent bound (never a quantity that depends on future tokens). ``compat_*`` functions
reproduce the estimator exactly as the Spectraformer code computes it (Nguyen et al., 2025); see
docs/random_features.md for every difference.
"""

from __future__ import annotations

import math

import torch

from core.ops.linear import accumulation_dtype, causal_linear_attention, linear_attention, linear_attention_step

KERNELS = ("softmax", "gaussian")
COMPONENTS = ("trigrf", "posrf", "oprf", "gerf", "saderf")
COMPAT_EPS = 1e-4


def check_kernel(kernel: str) -> None:
    """Raise ValueError unless ``kernel`` is "softmax" or "gaussian"."""
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")


def exact_kernel(x: torch.Tensor, y: torch.Tensor, kernel: str = "softmax") -> torch.Tensor:
    """The target kernel between every query and key.

    Args:
        x (torch.Tensor): ``[..., N, d]`` scaled queries.
        y (torch.Tensor): ``[..., M, d]`` scaled keys.
        kernel (str): "softmax" (``exp(x . y)``) or "gaussian" (``exp(-||x - y||^2 / 2)``).

    Returns:
        torch.Tensor: ``[..., N, M]``.
    """
    check_kernel(kernel)
    dots = torch.matmul(x, y.transpose(-1, -2))
    if kernel == "softmax":
        return dots.exp()
    sq = x.pow(2).sum(-1, keepdim=True) + y.pow(2).sum(-1).unsqueeze(-2)
    return (dots - sq / 2).exp()


def gerf_features(
    x: torch.Tensor, omega: torch.Tensor, a: float | torch.Tensor = 0.0, kernel: str = "softmax"
) -> torch.Tensor:
    """The full (unstabilised) GERF estimator features: ``f(x) . f(y)`` is unbiased for ``K(x, y)``.

    Args:
        x (torch.Tensor): ``[..., N, d]``.
        omega (torch.Tensor): ``[..., m, d]`` rows omega_r, each (close to) N(0, I_d).
        a (float or torch.Tensor): A < 1/8, a float or broadcastable to ``[..., 1, 1]``.
        kernel (str): "softmax" or "gaussian".

    Returns:
        torch.Tensor: ``[..., N, m]``.
    """
    check_kernel(kernel)
    a = torch.as_tensor(a, dtype=x.dtype, device=x.device)
    d, m = x.shape[-1], omega.shape[-2]
    b = (1 - 4 * a).sqrt()
    log_d = d / 4 * torch.log(1 - 4 * a)
    sq = x.pow(2).sum(-1, keepdim=True)
    norm_term = sq if kernel == "gaussian" else sq / 2
    exponent = a * omega.pow(2).sum(-1).unsqueeze(-2) + b * torch.matmul(x, omega.transpose(-1, -2))
    return (exponent + log_d - norm_term).exp() / math.sqrt(m)


def trig_features(x: torch.Tensor, omega: torch.Tensor, kernel: str = "softmax") -> torch.Tensor:
    """Random Fourier features ``m^{-1/2} [cos(omega . x), sin(omega . x)]`` (times ``exp(||x||^2/2)`` for softmax).

    Returns:
        torch.Tensor: ``[..., N, 2m]``, unbiased for ``K(x, y)`` (signed: the estimate can be negative).
    """
    check_kernel(kernel)
    proj = torch.matmul(x, omega.transpose(-1, -2))
    out = torch.cat([proj.cos(), proj.sin()], dim=-1) / math.sqrt(omega.shape[-2])
    if kernel == "softmax":
        out = out * (x.pow(2).sum(-1, keepdim=True) / 2).exp()
    return out


def saderf_features(
    x: torch.Tensor,
    omega: torch.Tensor,
    psi: torch.Tensor,
    a: float | torch.Tensor = 0.0,
    kernel: str = "softmax",
    is_query: bool = True,
) -> torch.Tensor:
    """The full SADERF estimator features: GERF on ``x psi`` (queries) or ``y / psi`` (keys).

    ``(x psi) . (y / psi) = x . y``, so the softmax kernel is unchanged; the Gaussian kernel's extra factor
    ``exp(-||x||^2 / 2)`` uses the untransformed norm.

    Args:
        x (torch.Tensor): ``[..., N, d]``.
        omega (torch.Tensor): ``[..., m, d]``.
        psi (torch.Tensor): ``[..., 1, d]`` positive diagonal of Psi.
        a (float or torch.Tensor): GERF's A.
        kernel (str): "softmax" or "gaussian".
        is_query (bool): queries multiply by psi, keys divide.

    Returns:
        torch.Tensor: ``[..., N, m]``.
    """
    out = gerf_features(x * psi if is_query else x / psi, omega, a, "softmax")
    if kernel == "gaussian":
        out = out * (-x.pow(2).sum(-1, keepdim=True) / 2).exp()
    return out


def token_moments(x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and mean square of each feature over a sequence's real tokens.

    Args:
        x (torch.Tensor): ``[B, H, N, d]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.

    Returns:
        ``(mean [B, H, d], mean_square [B, H, d])``.
    """
    if key_padding_mask is None:
        return x.mean(dim=-2), x.pow(2).mean(dim=-2)
    weight = key_padding_mask[:, None, :, None].to(x.dtype)
    count = weight.sum(dim=-2).clamp_min(1.0)
    return (x * weight).sum(dim=-2) / count, (x.pow(2) * weight).sum(dim=-2) / count


def pair_statistic(mean_x, sq_x, mean_y, sq_y) -> torch.Tensor:
    """``phi = mean over pairs (i, j) of ||x_i + y_j||^2 = E||x||^2 + E||y||^2 + 2 E[x] . E[y]``; ``[...]``."""
    return sq_x.sum(-1) + sq_y.sum(-1) + 2 * (mean_x * mean_y).sum(-1)


def optimal_positive_a(phi: torch.Tensor, d: int) -> torch.Tensor:
    """OPRF's variance-minimising A for the pair statistic ``phi`` (Likhosherstov et al., 2022).

    ``rho`` is the positive root of ``2 phi rho^2 + (2 phi + d) rho - d = 0`` and ``A = (1 - 1/rho) / 8``, written
    in the cancellation-free form ``A = (2d - b - sqrt(b^2 + 8 d phi)) / (16 d)``, ``b = 2 phi + d``; A = 0 at
    phi = 0 and A < 0 otherwise.
    """
    b = 2 * phi + d
    return (2 * d - b - (b * b + 8 * d * phi).sqrt()) / (16 * d)


def saderf_scales(sq_x: torch.Tensor, sq_y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """SADERF's diagonal ``psi_l = (E[y_l^2] / E[x_l^2])^{1/4}``; queries map to ``x psi``, keys to ``y / psi``."""
    return ((sq_y + eps) / (sq_x + eps)).pow(0.25)


def gerf_exponents(
    x: torch.Tensor, omega: torch.Tensor, a: torch.Tensor | None = None, input_scale: float = 1.0
) -> torch.Tensor:
    """The data-dependent exponent shared by queries and keys, ``A ||omega_r||^2 + B omega_r . (s x)``.

    Args:
        x (torch.Tensor): ``[B, H, N, d]``.
        omega (torch.Tensor): ``[H, m, d]``.
        a (torch.Tensor, optional): A broadcastable to ``[B, H, 1, 1]`` (folded into omega) or ``[B, H, N, 1]``;
            None means A = 0 (B = 1).
        input_scale (float): s, applied to omega instead of the ``[B, H, N, d]`` input.

    Returns:
        torch.Tensor: ``[B, H, N, m]``.
    """
    if a is not None and a.dim() >= 2 and a.shape[-2] > 1:  # one A per position: B cannot be folded into omega
        b = (1 - 4 * a).sqrt()
        return b * torch.matmul(x, (input_scale * omega).transpose(-1, -2)) + a * omega.pow(2).sum(-1).unsqueeze(-2)
    weight, bias = folded_gerf_weights(omega, a, input_scale)
    exponent = torch.matmul(x, weight.transpose(-1, -2))
    return exponent if bias is None else exponent.add_(bias)


def folded_gerf_weights(
    omega: torch.Tensor, a: torch.Tensor | None = None, input_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The GERF exponent ``A ||omega_r||^2 + B omega_r . (s x)`` as weight rows and a row term, for one A per head.

    Args:
        omega (torch.Tensor): ``[H, m, d]``.
        a (torch.Tensor, optional): A broadcastable to ``[B, H, 1, 1]``; None means A = 0.
        input_scale (float): s.

    Returns:
        ``(W = B s omega [(B,) H, m, d], c = A ||omega_r||^2 [B or 1, H, 1, m] or None)``.
    """
    if a is None:
        return input_scale * omega, None
    return (1 - 4 * a).sqrt() * input_scale * omega, a * omega.pow(2).sum(-1).unsqueeze(-2)


def _masked_max(t: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """Max of ``t [B, H, N, F]`` over real tokens and features -> ``[B, H, 1, 1]`` (0 for an all-padding row)."""
    if key_padding_mask is not None:
        t = t.masked_fill(~key_padding_mask[:, None, :, None], float("-inf"))
    top = t.amax(dim=(-2, -1), keepdim=True)
    return torch.where(torch.isfinite(top), top, torch.zeros_like(top))


def causal_key_shift(omega: torch.Tensor, a: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    """Data-independent key stabiliser for causal mode, ``[B or 1, H, 1, 1]``.

    Since ``B omega . y - ||y||^2 / 2 <= B^2 ||omega||^2 / 2``, every key exponent is at most
    ``(1/2 - A) max_r ||omega_r||^2``; subtracting that bound minus a headroom of ``log(max float) / 3`` keeps key
    features below ``exp(headroom)`` (no overflow of the prefix sums) while leaving room against underflow.
    """
    half = 0.5 if a is None else 0.5 - a
    bound = half * omega.pow(2).sum(-1).amax(-1, keepdim=True).unsqueeze(-1)
    headroom = math.log(torch.finfo(dtype).max) / 3
    return (bound - headroom).clamp_min(0.0)


def positive_attention_features(
    x: torch.Tensor,
    y: torch.Tensor,
    omega: torch.Tensor,
    a: torch.Tensor | None = None,
    kernel: str = "softmax",
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    key_norms: torch.Tensor | None = None,
    input_scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stabilised GERF-family features for normalised attention (all per-query factors dropped).

    Each map is one matmul followed by in-place shifts and an in-place exponential, so a forward pass keeps a
    single ``[B, H, N, m]`` tensor per side.

    Args:
        x (torch.Tensor): ``[B, H, N, d]`` queries (scaled by ``input_scale``; transformed for SADERF).
        y (torch.Tensor): ``[B, H, N, d]`` keys (likewise).
        omega (torch.Tensor): ``[H, m, d]``.
        a (torch.Tensor, optional): A, broadcastable to ``[B, H, 1, 1]``; None for A = 0 (PosRF).
        kernel (str): "softmax" or "gaussian".
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``; padded keys are zeroed and never set the max.
        causal (bool): use the data-independent key stabiliser instead of the per-sequence maximum.
        key_norms (torch.Tensor, optional): ``[B, H, N, 1]`` squared norms of the untransformed, scaled keys for
            the Gaussian kernel's extra factor (SADERF); default ``||s y||^2``.
        input_scale (float): s, the ``d^{-1/4}`` temperature, applied through omega.

    Returns:
        ``(query features [B, H, N, m], key features [B, H, N, m])``, non-negative.
    """
    check_kernel(kernel)
    if key_padding_mask is not None:
        y = y * key_padding_mask[:, None, :, None].to(y.dtype)
    eq = gerf_exponents(x, omega, a, input_scale)
    qf = eq.sub_(eq.amax(dim=-1, keepdim=True).detach()).exp_()
    ek = gerf_exponents(y, omega, a, input_scale)
    sq = y.pow(2).sum(-1, keepdim=True) * input_scale**2
    ek = ek.sub_(sq / 2)
    if kernel == "gaussian":
        ek = ek.sub_((sq if key_norms is None else key_norms) / 2)
    shift = causal_key_shift(omega, a, ek.dtype) if causal else _masked_max(ek.detach(), key_padding_mask)
    return qf, ek.sub_(shift).exp_()


def trig_attention_features(
    x: torch.Tensor,
    y: torch.Tensor,
    omega: torch.Tensor,
    kernel: str = "softmax",
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """TrigRF features for normalised attention: queries ``[cos, sin]``; keys also carry ``exp(||y||^2/2)`` (softmax).

    The key factor is stabilised by the maximum over real keys (non-causal). Causal mode has no data-independent
    bound for ``||y||^2``, so the factor's exponent is capped at ``log(max float) / 3`` (about 29.6 in float32):
    a key with ``||y||^2 > 59`` is under-weighted instead of overflowing into the prefix sums.
    Returns ``[B, H, N, 2m]`` each, signed.
    """
    check_kernel(kernel)
    if key_padding_mask is not None:
        y = y * key_padding_mask[:, None, :, None].to(y.dtype)
    pq = torch.matmul(x, omega.transpose(-1, -2))
    pk = torch.matmul(y, omega.transpose(-1, -2))
    qf = torch.cat([pq.cos(), pq.sin()], dim=-1)
    kf = torch.cat([pk.cos(), pk.sin()], dim=-1)
    if kernel == "softmax":
        half_sq = y.pow(2).sum(-1, keepdim=True) / 2
        if causal:
            half_sq = half_sq.clamp_max(math.log(torch.finfo(half_sq.dtype).max) / 3)
        else:
            half_sq = half_sq - _masked_max(half_sq, key_padding_mask).detach()
        kf = kf * half_sq.exp()
    return qf, kf


def compat_gerf_features(x: torch.Tensor, omega: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Spectraformer's GERF-family map, for queries and keys alike: ``exp(e - max_r e) + 1e-4``.

    ``e = A ||omega||^2 + B omega . x - ||x||^2``; the upstream per-token maximum cancels the norm term, so each key
    is reweighted by ``exp(-max_r e)`` (a bias) and a padded (zeroed) key keeps positive features.
    """
    e = gerf_exponents(x, omega, a)
    return (e - e.amax(dim=-1, keepdim=True)).exp() + COMPAT_EPS


def compat_trig_features(x: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Spectraformer's TrigRF map: ``[cos, sin] * exp(||x|| - max_r [cos, sin])`` (an L2 norm, not ``||x||^2 / 2``)."""
    proj = torch.matmul(x, omega.transpose(-1, -2))
    trig = torch.cat([proj.cos(), proj.sin()], dim=-1)
    return trig * (x.norm(dim=-1, keepdim=True) - trig.amax(dim=-1, keepdim=True)).exp()


def _safe_divide(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    tiny = torch.finfo(den.dtype).tiny
    return num / torch.where(den.abs() > tiny, den, torch.full_like(den, tiny))


def random_feature_attention(
    qf: torch.Tensor,
    kf: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Normalised attention ``sum_j (qf_i . kf_j) v_j / sum_j qf_i . kf_j`` through the linear-attention ops.

    The denominator's epsilon is the smallest normal float of the accumulation dtype (1.2e-38 in float32), not
    the ops' default 1e-6, which would bias small stabilised features; it only keeps a query that sees no real key
    finite (its output is 0).

    Args:
        qf (torch.Tensor): ``[B, H, N, F]`` query features.
        kf (torch.Tensor): ``[B, H, N, F]`` key features.
        v (torch.Tensor): ``[B, H, N, Dv]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``.
        causal (bool): query i sees keys j <= i.
        chunk_size (int): chunk length of the causal op.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]`` in the dtype of v.
    """
    eps = torch.finfo(accumulation_dtype(qf.dtype)).tiny
    if causal:
        return causal_linear_attention(qf, kf, v, key_padding_mask, eps=eps, chunk_size=chunk_size)
    return linear_attention(qf, kf, v, key_padding_mask, eps=eps)


def random_feature_step(
    qf_t: torch.Tensor,
    kf_t: torch.Tensor,
    v_t: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One causal decoding step of :func:`random_feature_attention` (same epsilon).

    Args:
        qf_t, kf_t (torch.Tensor): features ``[B, H, F]`` of the new token.
        v_t (torch.Tensor): value ``[B, H, Dv]``.
        state (tuple, optional): ``(S [B, H, F, Dv], z [B, H, F])`` from the previous step.

    Returns:
        ``([B, H, Dv], state)``.
    """
    eps = torch.finfo(accumulation_dtype(qf_t.dtype)).tiny
    out, state = linear_attention_step(qf_t, kf_t, v_t, state, eps=eps)
    return out.to(v_t.dtype), state


def reference_kernel_attention(
    x: torch.Tensor,
    y: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    kernel: str = "softmax",
) -> torch.Tensor:
    """Exact normalised kernel attention ``K v / K 1`` with the explicit ``[B, H, N, N]`` kernel (the reference).

    For the softmax kernel this is softmax attention ``softmax(q k^T / sqrt(d)) v``. Rows are shifted by their
    maximum score before the exponential, which cancels exactly.
    """
    check_kernel(kernel)
    scores = torch.matmul(x, y.transpose(-1, -2))
    if kernel == "gaussian":
        scores = scores - y.pow(2).sum(-1).unsqueeze(-2) / 2
    allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device)
    if causal:
        allowed = allowed.tril()
    allowed = allowed.expand(scores.shape)
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    top = scores.amax(dim=-1, keepdim=True)
    weights = (scores - torch.where(torch.isfinite(top), top, torch.zeros_like(top))).exp()
    return _safe_divide(torch.matmul(weights, v), weights.sum(dim=-1, keepdim=True))
