"""Linformer (Wang et al., 2020, "Linformer: Self-Attention with Linear Complexity").

Keys and values are projected along the sequence to k rows, ``K_p = E K`` and ``V_p = F V`` with trained
``E, F`` of shape (k, n), and ``out = softmax(Q K_p^T / sqrt(d)) V_p`` costs O(N k d). The projections are
shared across heads (the paper's "headwise sharing"), and ``share_kv`` ties ``F = E`` ("key-value sharing").
Sequences shorter than ``max_len`` use the first N columns; padded keys and values are zeroed before the
projection, so with right padding a real token's output equals the unpadded run.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from core.attention.base import ProjectedAttention
from core.ops.softmax import softmax_attention
from core.registry import register_attention


def sequence_projection(t: torch.Tensor, projection: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    """``E t`` along the sequence: ``t [B, H, N, D]``, ``projection [k, >= N]`` -> ``[B, H, k, D]``; pads count 0."""
    if key_padding_mask is not None:
        t = t.masked_fill(~key_padding_mask[:, None, :, None], 0.0)
    return torch.matmul(projection[:, : t.shape[-2]].to(t.dtype), t)


@register_attention(
    "linformer",
    causal=False,
    key_padding_mask=True,
    approximates="softmax",
    complexity="O(N k d)",
    summary="softmax(Q (E K)^T / sqrt(d)) (F V) with trained sequence projections E, F (Wang et al., 2020)",
)
class LinformerAttention(ProjectedAttention):
    """Linformer attention with trained sequence projections.

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): must be False (the projections mix every position).
        max_len (int): the longest sequence n; E and F have n columns. Default: 4096 (LRA's longest).
        proj_dim (int): k, the projected length. Default: 128.
        share_kv (bool): one projection for keys and values (``F = E``). Default: False.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.

    Upstream (Skyformer's LRA code) builds E with ``nn.Parameter(...).to(device)``, which returns a plain tensor
    on a GPU: E is never trained nor saved there. Here E and F are registered parameters, initialised
    N(0, 1/k) so that ``E K`` keeps the scale of K when k ~ N.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        max_len: int = 4096,
        proj_dim: int = 128,
        share_kv: bool = False,
        **kwargs,
    ):
        super().__init__(dim, num_heads, causal, **kwargs)
        if causal:
            raise ValueError("linformer has no causal form: its sequence projections mix every position")
        if max_len < 1 or proj_dim < 1:
            raise ValueError(f"max_len and proj_dim must be positive, got {max_len} and {proj_dim}")
        self.max_len = max_len
        self.proj_dim = proj_dim
        self.key_projection = nn.Parameter(torch.randn(proj_dim, max_len) / math.sqrt(proj_dim))
        self.value_projection = None if share_kv else nn.Parameter(torch.randn(proj_dim, max_len) / math.sqrt(proj_dim))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_len={self.max_len}, proj_dim={self.proj_dim}"

    def _projected(self, k: torch.Tensor, v: torch.Tensor | None, key_padding_mask: torch.Tensor | None):
        n = k.shape[-2]
        if n > self.max_len:
            raise ValueError(
                f"sequence length {n} exceeds max_len={self.max_len} of this linformer; build it with max_len >= {n}"
            )
        value_projection = self.key_projection if self.value_projection is None else self.value_projection
        k_p = sequence_projection(k, self.key_projection, key_padding_mask)  # (B, H, k, Dh)
        v_p = None if v is None else sequence_projection(v, value_projection, key_padding_mask)
        return k_p, v_p

    def attend(self, q, k, v, key_padding_mask, x):
        k_p, v_p = self._projected(k, v, key_padding_mask)
        return softmax_attention(q, k_p, v_p)

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``softmax(Q K_p^T / sqrt(d)) F`` of shape ``(B, H, N, N)`` (columns of padded tokens are 0)."""
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        k_p, _ = self._projected(k, None, mask)
        weights = torch.softmax(torch.matmul(q, k_p.transpose(-1, -2)) / math.sqrt(q.shape[-1]), dim=-1)
        value_projection = self.key_projection if self.value_projection is None else self.value_projection
        matrix = torch.matmul(weights, value_projection[:, : x.shape[1]].to(weights.dtype))
        if mask is not None:
            matrix = matrix * mask[:, None, None, :].to(matrix.dtype)
        return matrix
