"""Random-feature attention: any component function with any weight matrix (the Spectraformer framework).

Nguyen et al., 2025, "Spectraformer: A Unified Random Feature Framework for Transformer" combine a component
function {trigrf, posrf, oprf, gerf, saderf} (:mod:`core.ops.random_features`) with a weight matrix {gaussian, orf,
scrf, sorf, rom, sgq, qmc, mm, fastfood_fixed, fastfood_learnable} (:mod:`core.ops.feature_weights`).
``performer`` is posrf + orf, FAVOR+ of Choromanski et al., 2021, "Rethinking Attention with Performers".

Both target kernels are explicit: ``kernel="softmax"`` estimates ``exp(q . k / sqrt(d))`` (softmax attention) and
``kernel="gaussian"`` ``exp(-||q - k||^2 / (2 sqrt(d)))``, normalised over keys. ``spectraformer_compat=True``
computes the estimator as the Spectraformer code does (Gaussian form, per-token key maximum, +1e-4, padded keys
in the normaliser) to compare with published numbers; docs/random_features.md lists every difference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.attention.base import ProjectedAttention
from core.ops.feature_weights import FASTFOOD, WEIGHT_NAMES, draw_fastfood, draw_weights, fastfood_transform
from core.ops.lean_features import lean_positive_feature_attention
from core.ops.lean_projected import projected_lean_attention
from core.ops.linear import accumulation_dtype
from core.ops.random_features import (
    COMPONENTS,
    KERNELS,
    compat_gerf_features,
    compat_trig_features,
    folded_gerf_weights,
    optimal_positive_a,
    pair_statistic,
    positive_attention_features,
    random_feature_attention,
    random_feature_step,
    saderf_scales,
    token_moments,
    trig_attention_features,
)
from core.registry import register_attention

GERF_A_LIMIT = 0.125  # A < 1/8 keeps the estimator's variance finite


class RandomFeatureWeights(nn.Module):
    """One weight matrix per head, ``[H, m, d]``: buffers for drawn matrices, parameters for learnable FastFood.

    Args:
        kind (str): a name of :data:`core.ops.feature_weights.WEIGHT_NAMES`.
        num_heads (int): H.
        num_rows (int): m, rows omega_r per head.
        head_dim (int): d.
        **options: ``quadrature_points`` (sgq) or ``sequence`` (qmc) for the sampler.
    """

    def __init__(self, kind: str, num_heads: int, num_rows: int, head_dim: int, **options) -> None:
        super().__init__()
        if kind not in WEIGHT_NAMES:
            raise ValueError(f"unknown weights {kind!r}; choose one of {list(WEIGHT_NAMES)}")
        self.kind, self.num_heads, self.num_rows, self.head_dim = kind, num_heads, num_rows, head_dim
        self.options = options
        self.learnable = kind == "fastfood_learnable"
        dtype = torch.get_default_dtype()
        if kind in FASTFOOD:
            draws = self._draw_fastfood(None)
            for name in ("sign", "gauss", "scale"):
                value = draws[name].to(dtype)
                if self.learnable:
                    self.register_parameter(name, nn.Parameter(value))
                else:
                    self.register_buffer(name, value)
            self.register_buffer("perm", draws["perm"])
        else:
            self.register_buffer("omega", self._draw_dense(None).to(dtype))

    def extra_repr(self) -> str:
        return f"kind={self.kind}, heads={self.num_heads}, rows={self.num_rows}, head_dim={self.head_dim}"

    def _draw_dense(self, generator: torch.Generator | None) -> torch.Tensor:
        return torch.stack([
            draw_weights(self.kind, self.num_rows, self.head_dim, generator, **self.options)
            for _ in range(self.num_heads)
        ])

    def _draw_fastfood(self, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        heads = [draw_fastfood(self.num_rows, self.head_dim, generator) for _ in range(self.num_heads)]
        return {name: torch.cat([h[name] for h in heads]) for name in heads[0]}  # (H k, n)

    @torch.no_grad()
    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Draw fresh matrices in place (same device and dtype). Learnable FastFood is trained, never redrawn."""
        if self.learnable:
            raise ValueError("fastfood_learnable weights are parameters trained with the model; they are not redrawn")
        if self.kind in FASTFOOD:
            for name, value in self._draw_fastfood(generator).items():
                getattr(self, name).copy_(value)
        else:
            self.omega.copy_(self._draw_dense(generator))

    def forward(self) -> torch.Tensor:
        """The ``[H, m, d]`` matrix; FastFood is materialised through the fast Walsh-Hadamard transform."""
        if self.kind not in FASTFOOD:
            return self.omega
        d, h = self.head_dim, self.num_heads
        eye = torch.eye(d, dtype=self.gauss.dtype, device=self.gauss.device)
        width = self.sign.shape[0] * self.sign.shape[1]
        rows = fastfood_transform(eye, self.sign, self.gauss, self.scale, self.perm, width)  # (d, H k n)
        return rows.view(d, h, width // h)[:, :, : self.num_rows].permute(1, 2, 0)


class RandomFeatureAttention(ProjectedAttention):
    """Normalised random-feature attention ``f(q_i) . sum_j f(k_j) v_j / f(q_i) . sum_j f(k_j)``.

    Args:
        dim (int): model width D.
        num_heads (int): heads H; head width d = D / H.
        causal (bool): autoregressive form (chunked prefix states). Default: False.
        component (str): "trigrf", "posrf", "oprf", "gerf" or "saderf". Default: "posrf".
        weights (str): weight matrix, see :data:`core.ops.feature_weights.WEIGHT_NAMES`. Default: "orf".
        num_features (int): F, features per head fed to linear attention (trigrf uses F / 2 frequencies, F even).
            Default: 128.
        kernel (str): "softmax" or "gaussian"; default "softmax" ("gaussian" with ``spectraformer_compat``).
        redraw_interval (int, optional): redraw drawn matrices every this many training forward passes.
        statistics (str, optional): for oprf/saderf, "sequence" (each sequence's own real tokens; non-causal
            default) or "running" (running means updated in training; the causal default, as the current
            sequence's future would otherwise set A and Psi).
        momentum (float): running-statistics momentum. Default: 0.1.
        spectraformer_compat (bool): reproduce the upstream Spectraformer estimator. Default: False.
        quadrature_points (int): points of the Gauss-Hermite rule for "sgq". Default: 5.
        qmc_sequence (str): "sobol" or "halton" for "qmc". Default: "sobol".
        chunk_size (int): chunk length of the causal op. Default: 64.
        recompute_features (bool): non-causal PosRF/GERF/OPRF/SADERF (softmax kernel) attend through
            :func:`core.ops.lean_features.lean_positive_feature_attention`, which rebuilds the feature maps in the
            backward pass instead of storing them (same values and gradients, far less memory). Default: True.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        component: str = "posrf",
        weights: str = "orf",
        num_features: int = 128,
        kernel: str | None = None,
        redraw_interval: int | None = None,
        statistics: str | None = None,
        momentum: float = 0.1,
        spectraformer_compat: bool = False,
        quadrature_points: int = 5,
        qmc_sequence: str = "sobol",
        chunk_size: int = 64,
        recompute_features: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(dim, num_heads, causal, **kwargs)
        if component not in COMPONENTS:
            raise ValueError(f"unknown component {component!r}; choose one of {list(COMPONENTS)}")
        kernel = kernel or ("gaussian" if spectraformer_compat else "softmax")
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if spectraformer_compat and kernel != "gaussian":
            raise ValueError("spectraformer_compat=True computes the upstream Gaussian-kernel form; drop kernel='softmax'")
        if not isinstance(num_features, int) or num_features < 1 or (component == "trigrf" and num_features % 2):
            raise ValueError(f"num_features must be a positive integer (even for trigrf), got {num_features!r}")
        statistics = statistics or ("running" if causal else "sequence")
        if statistics not in ("sequence", "running"):
            raise ValueError(f"statistics must be 'sequence' or 'running', got {statistics!r}")
        if causal and statistics == "sequence" and component in ("oprf", "saderf") and not spectraformer_compat:
            raise ValueError(f"causal {component} cannot use statistics='sequence': future tokens would set its "
                             "parameters; use statistics='running'")
        if redraw_interval is not None and (weights == "fastfood_learnable" or redraw_interval < 1):
            raise ValueError("redraw_interval must be a positive integer and needs drawn (not learnable) weights")
        self.component, self.kernel, self.num_features = component, kernel, num_features
        self.statistics, self.momentum, self.compat = statistics, momentum, spectraformer_compat
        self.redraw_interval, self.chunk_size = redraw_interval, chunk_size
        self.recompute_features = recompute_features
        self.training_calls = 0
        options = {"quadrature_points": quadrature_points} if weights == "sgq" else {}
        if weights == "qmc":
            options = {"sequence": qmc_sequence}
        rows = num_features // 2 if component == "trigrf" else num_features
        self.feature_weights = RandomFeatureWeights(weights, num_heads, rows, self.head_dim, **options)
        if component in ("gerf", "saderf"):
            init = torch.empty(num_heads).uniform_(-0.99, 0.99).atanh()  # A = 0.125 tanh(raw) ~ U(-1/8, 1/8)
            self.gerf_a = nn.Parameter(init) if component == "gerf" else None
            if component == "saderf":
                self.register_buffer("compat_a", GERF_A_LIMIT * init.tanh())
        if component in ("oprf", "saderf"):
            for name in ("mean_q", "sq_q", "mean_k", "sq_k"):
                self.register_buffer(f"running_{name}", torch.zeros(num_heads, self.head_dim))
            self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, component={self.component}, kernel={self.kernel}, "
                f"num_features={self.num_features}, compat={self.compat}")

    def redraw(self, generator: torch.Generator | None = None) -> None:
        """Draw a fresh weight matrix (all heads) in place."""
        self.feature_weights.redraw(generator)

    def _gerf_a(self) -> torch.Tensor:
        return GERF_A_LIMIT * torch.tanh(self.gerf_a)

    @torch.no_grad()
    def _update_running(self, moments: tuple[torch.Tensor, ...]) -> None:
        self.num_batches_tracked += 1
        rate = max(self.momentum, 1.0 / float(self.num_batches_tracked))
        for name, value in zip(("mean_q", "sq_q", "mean_k", "sq_k"), moments):
            buffer = getattr(self, f"running_{name}")
            buffer.lerp_(value.mean(dim=0).to(buffer.dtype), rate)

    def _moments(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """``(mean_q, sq_q, mean_k, sq_k)``, each ``[B or 1, H, d]``, of the statistics the parameters use."""
        current = tuple(t.detach() for t in (*token_moments(x, mask), *token_moments(y, mask)))
        if self.statistics == "sequence":
            used = current
        else:
            used = tuple(getattr(self, f"running_{n}")[None].to(x.dtype) for n in ("mean_q", "sq_q", "mean_k", "sq_k"))
        if self.training:
            self._update_running(current)
        return used

    def _statistics_setup(self, x, y, mask):
        """OPRF/SADERF: A ``[B or 1, H, 1, 1]``, the (SADERF-transformed) queries and keys, the keys' own norms."""
        key_norms = None
        mean_q, sq_q, mean_k, sq_k = self._moments(x, y, mask)
        if self.component == "saderf":
            psi = saderf_scales(sq_q, sq_k)  # (B or 1, H, d)
            key_norms = y.pow(2).sum(-1, keepdim=True)
            x, y = x * psi[:, :, None, :], y / psi[:, :, None, :]
            mean_q, sq_q, mean_k, sq_k = mean_q * psi, sq_q * psi**2, mean_k / psi, sq_k / psi**2
        a = optimal_positive_a(pair_statistic(mean_q, sq_q, mean_k, sq_k), x.shape[-1])[:, :, None, None]
        return a, x, y, key_norms

    def _compat_features(self, x, y, omega, mask):
        """Upstream Spectraformer features: keys zeroed at padding but still in the normaliser."""
        if mask is not None:
            y = y * mask[:, None, :, None].to(y.dtype)
        if self.component == "trigrf":
            return compat_trig_features(x, omega), compat_trig_features(y, omega)
        if self.component == "posrf":
            a = x.new_zeros(())
        elif self.component == "gerf":
            a = self._gerf_a().to(x.dtype)[None, :, None, None]
        elif self.component == "oprf":  # per (head, position) statistic from batch means, as upstream
            mean_q, mean_k = x.mean(dim=0, keepdim=True), y.mean(dim=0, keepdim=True)
            phi = 2 * (mean_q * mean_k).sum(-1) + x.pow(2).sum(-1).mean(0, keepdim=True) + y.pow(2).sum(-1).mean(
                0, keepdim=True)
            a = optimal_positive_a(phi, x.shape[-1]).unsqueeze(-1).detach()  # (1, H, N, 1)
        else:
            psi = saderf_scales(x.pow(2).sum(-2), y.pow(2).sum(-2)).detach()[:, :, None, :]
            x, y = x * psi, y / psi
            a = self.compat_a.to(x.dtype)[None, :, None, None]
        return compat_gerf_features(x, omega, a), compat_gerf_features(y, omega, a)

    def feature_maps(self, q: torch.Tensor, k: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        """Query and key features ``[B, H, N, F]`` (accumulation dtype) from per-head ``q, k: [B, H, N, d]``."""
        acc = accumulation_dtype(q.dtype)
        scale = self.head_dim**-0.25
        q, k = q.to(acc), k.to(acc)
        omega = self.feature_weights().to(acc)
        if self.compat:
            return self._compat_features(q * scale, k * scale, omega, key_padding_mask)
        if self.component == "trigrf":
            return trig_attention_features(q * scale, k * scale, omega, self.kernel, key_padding_mask, self.causal)
        if self.component in ("posrf", "gerf"):  # the temperature goes through omega: no scaled copies of q, k
            a = None if self.component == "posrf" else self._gerf_a().to(acc)[None, :, None, None]
            return positive_attention_features(q, k, omega, a, self.kernel, key_padding_mask, self.causal,
                                               input_scale=scale)
        a, x, y, key_norms = self._statistics_setup(q * scale, k * scale, key_padding_mask)
        return positive_attention_features(x, y, omega, a, self.kernel, key_padding_mask, self.causal, key_norms)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention ``(B, N, D) -> (B, N, D)`` (see :class:`ProjectedAttention`); non-causal PosRF and GERF in
        float32/float64 run their four projections and the attention in one node
        (:func:`core.ops.lean_projected.projected_lean_attention`: no stored attention output, no separate
        ``[B, N, D]`` gradients between the projections and the attention)."""
        if not self._projected_lean_path(x):
            return super().forward(x, key_padding_mask)
        mask = self.check_input(x, key_padding_mask)
        self._count_training_call()
        weight, bias, kappa = self._folded_weights(accumulation_dtype(x.dtype), self.head_dim**-0.25)
        layers = (self.q_proj, self.k_proj, self.v_proj)
        proj_weight = torch.cat([layer.weight for layer in layers])
        proj_bias = None if self.q_proj.bias is None else torch.cat([layer.bias for layer in layers])
        return projected_lean_attention(x, proj_weight, proj_bias, self.out_proj.weight, self.out_proj.bias, weight,
                                        bias, mask, self.num_heads, kappa)

    def _projected_lean_path(self, x: torch.Tensor) -> bool:
        """Whether :meth:`forward` can fuse the projections: the lean path, PosRF/GERF (no statistics of the whole
        q and k), values, no active dropout before the output projection, and the input's own dtype throughout (no
        autocast, float32/float64 everywhere)."""
        if not self._lean_path() or self.component not in ("posrf", "gerf") or self.v_proj is None:
            return False
        if self.training and not isinstance(self.dropout, nn.Identity):
            return False
        if x.dtype != accumulation_dtype(x.dtype) or torch.is_autocast_enabled(x.device.type):
            return False
        layers = (self.q_proj, self.k_proj, self.v_proj, self.out_proj)
        return all(p.dtype == x.dtype for layer in layers for p in layer.parameters())

    def _count_training_call(self) -> None:
        """Redraw the drawn matrices every ``redraw_interval`` training forward passes."""
        if self.training and self.redraw_interval:
            if self.training_calls and self.training_calls % self.redraw_interval == 0:
                self.redraw()
            self.training_calls += 1

    def attend(self, q, k, v, key_padding_mask, x):
        self._count_training_call()
        if self._lean_path():
            return self._lean_attend(q, k, v, key_padding_mask)
        qf, kf = self.feature_maps(q, k, key_padding_mask)
        mask = key_padding_mask
        if self.compat and mask is not None:  # upstream zeroes V and lets padded keys into the normaliser
            v, mask = v * mask[:, None, :, None].to(v.dtype), None
        return random_feature_attention(qf, kf, v, mask, self.causal, self.chunk_size)

    def _lean_path(self) -> bool:
        if not self.recompute_features or self.causal or self.compat or self.component == "trigrf":
            return False
        return self.component != "saderf" or self.kernel == "softmax"  # SADERF-Gaussian needs the keys' own norms

    def _lean_attend(self, q, k, v, key_padding_mask):
        """The feature maps of :meth:`feature_maps` with A folded into the weight rows, recomputed in backward."""
        acc = accumulation_dtype(q.dtype)
        if self.component in ("posrf", "gerf"):
            weight, bias, kappa = self._folded_weights(acc, self.head_dim**-0.25)
        else:
            scale = self.head_dim**-0.25
            a, q, k, _ = self._statistics_setup(q.to(acc) * scale, k.to(acc) * scale, key_padding_mask)
            weight, bias, kappa = self._folded_weights(acc, 1.0, a)
        return lean_positive_feature_attention(q, k, v, weight, bias, key_padding_mask, kappa)

    def _folded_weights(self, acc: torch.dtype, scale: float, a: torch.Tensor | None = None):
        """``(W, c, kappa)`` of the lean path for inputs scaled by ``scale``: A is GERF's own (PosRF: 0) unless
        given (OPRF/SADERF statistics)."""
        omega = self.feature_weights().to(acc)
        if a is None and self.component == "gerf":
            a = self._gerf_a().to(acc)[None, :, None, None]
        weight, bias = folded_gerf_weights(omega, a, scale)
        return weight, bias, scale**2 / 2 if self.kernel == "softmax" else scale**2

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The ``[B, H, N, N]`` row-normalised matrix ``f(q_i) . f(k_j) / sum_j f(q_i) . f(k_j)`` this module applies."""
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        qf, kf = self.feature_maps(q, k, mask)
        scores = torch.matmul(qf, kf.transpose(-1, -2))
        if mask is not None and not self.compat:
            scores = scores * mask[:, None, None, :].to(scores.dtype)
        if self.causal:
            scores = scores.tril()
        return scores / scores.sum(dim=-1, keepdim=True)

    def step(self, x_t: torch.Tensor, state: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Recurrent decoding of one token ``x_t: (B, D)`` -> ``(B, D)``; equals the causal forward pass."""
        self.check_step_input(x_t)
        if self.compat and self.component in ("oprf", "saderf"):
            raise ValueError(f"spectraformer_compat {self.component} sets its parameters from whole sequences "
                             "(per-position batch means, sequence sums); it has no token-by-token form")
        q, k, v = self.project_qkv(x_t[:, None, :])  # (B, H, 1, d)
        qf, kf = self.feature_maps(q, k, None)
        out, sums = random_feature_step(qf[:, :, 0], kf[:, :, 0], v[:, :, 0], state["sums"] if state else None)
        y = self.out_proj(self.merge_heads(out[:, :, None]))[:, 0]
        return y, {"sums": sums}


_CAPABILITIES = dict(causal=True, key_padding_mask=True, approximates="softmax", incremental=True,
                     complexity="O(N m d)")
_NAMES = {
    "random_features": ({}, "normalised f(q) (f(K)^T V) for any component {trigrf, posrf, oprf, gerf, saderf} x any "
                            "weight matrix (Spectraformer, Nguyen et al., 2025); softmax (default) or gaussian kernel"),
    "performer": ({"component": "posrf", "weights": "orf"},
                  "FAVOR+: positive random features on orthogonal rows (Choromanski et al., 2021)"),
    "oprf_fastfoodl": ({"component": "oprf", "weights": "fastfood_learnable"},
                       "Spectraformer OPRF-FastFoodL: optimal positive features, learnable FastFood weights"),
    "oprf_orf": ({"component": "oprf", "weights": "orf"},
                 "Spectraformer OPRF-ORF: optimal positive features on orthogonal rows"),
    "posrf_mm": ({"component": "posrf", "weights": "mm"},
                 "Spectraformer PosRF-MM: positive features on moment-matched Gaussian rows"),
    "saderf_qmc": ({"component": "saderf", "weights": "qmc"},
                   "Spectraformer SADERF-QMC: dense-exponential features on scrambled Sobol rows"),
}
for _name, (_defaults, _summary) in _NAMES.items():
    register_attention(_name, summary=_summary, defaults=_defaults, **_CAPABILITIES)(RandomFeatureAttention)

