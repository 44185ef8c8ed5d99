"""Primal-Attention (Chen, Tao, Tonin, Suykens; NeurIPS 2023): self-attention as an asymmetric kernel SVD
in primal representation. See :mod:`core.ops.primal` for the math.

Per head h with p = D / H and s = ``low_rank``:

    e = phi(q) W_e,  r = phi(k) W_r,  out_h = Linear_{2s -> p}([e, r])   (shared across heads)

followed by the usual output projection. There is no value projection and no N x N matrix. Non-causal layers
use data-dependent W_{.|X} = X~^T W~ from n = min(N_max, s * rank_multi) evenly spaced tokens of the layer
input; causal layers use plain parameters W ~ (H, p, s) on running prefix means of q and k, and decode
incrementally from running sums.

The KSVD regulariser of every forward pass is recorded and collected by :func:`core.losses.ksvd_loss`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.attention.base import ProjectedAttention
from core.ops.primal import (
    cosine_features,
    cosine_scores,
    data_dependent_weights,
    evenly_spaced_positions,
    ksvd_energy,
    ksvd_objective,
    ksvd_trace,
    prefix_mean,
    projected_cosine_scores,
)
from core.registry import register_attention

KSVD_HISTORY = 16


@register_attention(
    "primal",
    causal=True,
    key_padding_mask=True,
    approximates=None,
    incremental=True,
    complexity="O(N s d)",
    summary="asymmetric kernel SVD in primal form: [phi(q) W_e, phi(k) W_r] -> head (Chen et al., NeurIPS 2023)",
)
class PrimalAttention(ProjectedAttention):
    """Primal-Attention layer.

    Args:
        dim (int): model width D.
        num_heads (int): heads H; the head width p = D / H.
        causal (bool): causal form (prefix means, data-independent W). Default: False.
        low_rank (int): s, the number of singular directions (the paper's ``low_rank``). Default: 20.
        rank_multi (int): m; the non-causal form samples n = s * m tokens. Default: 10.
        max_seq_len (int, optional): the longest sequence the layer will see; caps n at it (n = min(N, s m)
            in the time-series and DeiT code). Default: None (no cap).
        ksvd_reduction (str): "sample" (square per sample, then mean: time series, RL, NLP) or "batch"
            (mean over the batch, then square: LRA, DeiT). Default: "sample".
        original_padding (bool): reproduce the official code, which samples padded tokens and averages the
            KSVD terms over them. Default False: padding never changes a real token's output.
        save_projections (bool): keep the query and key projections ``(B, N, D)`` for the backward pass of the
            non-causal form instead of recomputing them from x: two fewer ``N x D x D`` products per step for
            ``2 B N D`` more floats (worth it for short sequences). Default: False.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        low_rank: int = 20,
        rank_multi: int = 10,
        max_seq_len: int | None = None,
        ksvd_reduction: str = "sample",
        original_padding: bool = False,
        save_projections: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(dim, num_heads, causal, uses_values=False, **kwargs)
        if low_rank < 1 or rank_multi < 1:
            raise ValueError(f"low_rank and rank_multi must be >= 1, got {low_rank} and {rank_multi}")
        if ksvd_reduction not in ("sample", "batch"):
            raise ValueError(f"ksvd_reduction must be 'sample' or 'batch', got {ksvd_reduction!r}")
        self.low_rank = low_rank
        self.rank_multi = rank_multi
        self.ksvd_reduction = ksvd_reduction
        self.original_padding = original_padding
        self.save_projections = save_projections
        if causal:
            rows = self.head_dim
            self.num_samples = 0
        else:
            rows = low_rank * rank_multi if max_seq_len is None else min(max_seq_len, low_rank * rank_multi)
            self.num_samples = rows
        # W~_e, W~_r: (H, n, s) data-dependent, or (H, p, s) plain parameters in the causal form
        self.weight_e = nn.Parameter(torch.empty(num_heads, rows, low_rank))
        self.weight_r = nn.Parameter(torch.empty(num_heads, rows, low_rank))
        self.lambdas = nn.Parameter(torch.empty(num_heads, low_rank))
        self.score_proj = nn.Linear(2 * low_rank, self.head_dim)
        self._ksvd_records: deque = deque(maxlen=KSVD_HISTORY)
        self.reset_primal_parameters()

    def reset_primal_parameters(self) -> None:
        """The official initialisation: orthogonal_ on the 3-d tensors (rows of the flattened (H, n*s)
        matrix are orthonormal), Lambda ~ U(0, 1)."""
        nn.init.orthogonal_(self.weight_e)
        nn.init.orthogonal_(self.weight_r)
        nn.init.uniform_(self.lambdas)

    def extra_repr(self) -> str:
        samples = "" if self.causal else f", num_samples={self.num_samples}"
        return f"{super().extra_repr()}, low_rank={self.low_rank}{samples}"

    def scores(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The projection scores e and r, token-major ``(B, N, H, s)`` each, for a checked ``x: (B, N, D)``."""
        b, n, _ = x.shape
        mask = None if self.original_padding else key_padding_mask
        if self.causal:
            q = self.q_proj(x).view(b, n, self.num_heads, self.head_dim)
            k = self.k_proj(x).view(b, n, self.num_heads, self.head_dim)
            q, k = prefix_mean(q, mask, dim=1), prefix_mean(k, mask, dim=1)
            return cosine_scores(q, self.weight_e), cosine_scores(k, self.weight_r)
        positions = evenly_spaced_positions(self.num_samples, n, mask, batch=b)
        weights = torch.cat([self.weight_e, self.weight_r], dim=-1)  # (H, n, 2s)
        weight_e, weight_r = data_dependent_weights(x, positions, weights, self.num_heads).split(self.low_rank, -1)
        return projected_cosine_scores(
            x, self.q_proj, weight_e, self.k_proj, weight_r, self.num_heads, self.save_projections
        )

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Primal-Attention.

        Args:
            x (torch.Tensor): ``(B, N, D)``.
            key_padding_mask (torch.Tensor, optional): bool ``(B, N)``, True = real token.

        Returns:
            torch.Tensor: ``(B, N, D)``.
        """
        mask = self.check_input(x, key_padding_mask)
        scores = torch.cat(self.scores(x, mask), dim=-1)  # [e, r]: (B, N, H, 2s)
        s = self.low_rank
        self._record_ksvd(scores[..., :s], scores[..., s:], None if self.original_padding else mask)
        return self.mix_heads(scores)

    def mix_heads(self, scores: torch.Tensor) -> torch.Tensor:
        """``out_proj(concat_h Linear_{2s -> p}(scores_h))`` for token-major scores ``(..., H, 2s)`` -> ``(..., D)``.

        Without dropout the two maps can be folded into one ``(D, H * 2s)`` matrix built from the parameters, so the
        ``(T, D)`` head outputs are never formed. That costs ``D^2 2s`` multiply-adds once and ``D H 2s`` per token
        instead of ``(2s + D) D``: it is taken when it does fewer multiply-adds for the ``T`` tokens at hand (e.g.
        for s = 20, H = 8, D = 512 from about 90 tokens on; never for s = 40, H = 8, D = 512).
        """
        tokens = scores.numel() // (self.num_heads * 2 * self.low_rank)
        width = 2 * self.low_rank
        unfolded_cost = tokens * (width + self.dim) * self.dim
        folded_cost = tokens * self.num_heads * width * self.dim + self.dim * self.dim * width
        if (self.training and isinstance(self.dropout, nn.Dropout)) or folded_cost >= unfolded_cost:
            return self.out_proj(self.dropout(self.score_proj(scores).flatten(-2)))
        out_weight = self.out_proj.weight.view(self.dim, self.num_heads, self.head_dim)  # (D, H, p)
        folded = torch.einsum("dhp,pt->dht", out_weight, self.score_proj.weight).reshape(self.dim, -1)
        bias = torch.einsum("dhp,p->d", out_weight, self.score_proj.bias)
        if self.out_proj.bias is not None:
            bias = bias + self.out_proj.bias
        return F.linear(scores.flatten(-2), folded, bias)

    def _record_ksvd(self, e: torch.Tensor, r: torch.Tensor, mask: torch.Tensor | None) -> None:
        """Store per-sample energies of token-major scores ``(B, N, H, s)``."""
        self._ksvd_records.append((ksvd_energy(e, self.lambdas, mask), ksvd_energy(r, self.lambdas, mask)))

    def pop_ksvd_loss(self) -> torch.Tensor | None:
        """L_KSVD = (E + R - T)^2 of the forward passes since the last call (None if there were none).

        With several passes (e.g. the two encodings of a dual encoder), E and R are averaged over them
        first, as the official LRA code does.
        """
        if not self._ksvd_records:
            return None
        energies_e, energies_r = zip(*self._ksvd_records)
        self._ksvd_records.clear()
        energy_e = _average_per_sample(energies_e)
        energy_r = _average_per_sample(energies_r)
        return ksvd_objective(energy_e, energy_r, ksvd_trace(self.weight_e, self.weight_r), self.ksvd_reduction)

    def clear_ksvd(self) -> None:
        """Drop recorded KSVD terms (e.g. after evaluation passes)."""
        self._ksvd_records.clear()

    def projection_floor(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_proj(self.q_proj(x) + self.k_proj(x))

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The asymmetric kernel matrix ``phi(q) phi(k)^T`` ``(B, H, N, N)`` whose SVD the layer learns
        (masked and causal as the layer is)."""
        mask = self.check_input(x, key_padding_mask)
        q = self.split_heads(self.q_proj(x))
        k = self.split_heads(self.k_proj(x))
        if self.causal:
            q, k = prefix_mean(q, mask), prefix_mean(k, mask)
        kernel = torch.matmul(cosine_features(q), cosine_features(k).transpose(-1, -2))
        if mask is not None:
            kernel = kernel * mask[:, None, None, :].to(kernel.dtype)
        return kernel.tril() if self.causal else kernel

    def step(self, x_t: torch.Tensor, state: dict[str, Any] | None = None):
        """Decode one token ``x_t: (B, D)`` from running sums of q and k; returns ``(B, D)`` and the state."""
        self.check_step_input(x_t)
        q = self.q_proj(x_t).view(x_t.shape[0], self.num_heads, self.head_dim)
        k = self.k_proj(x_t).view(x_t.shape[0], self.num_heads, self.head_dim)
        if state:
            q_sum, k_sum, count = state["q_sum"] + q, state["k_sum"] + k, state["count"] + 1
        else:
            q_sum, k_sum, count = q, k, 1
        e = torch.matmul(cosine_features(q_sum / count).unsqueeze(-2), self.weight_e).squeeze(-2)  # (B, H, s)
        r = torch.matmul(cosine_features(k_sum / count).unsqueeze(-2), self.weight_r).squeeze(-2)
        y = self.mix_heads(torch.cat([e, r], dim=-1))
        return y, {"q_sum": q_sum, "k_sum": k_sum, "count": count}


def _average_per_sample(values: tuple[torch.Tensor, ...]) -> torch.Tensor:
    if len(values) == 1:
        return values[0]
    if all(v.shape == values[0].shape for v in values):
        return torch.stack(values).mean(dim=0)
    return torch.cat(values)

