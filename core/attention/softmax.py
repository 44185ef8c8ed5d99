"""Canonical softmax attention (Vaswani et al., 2017, "Attention Is All You Need").

The forward pass runs ``scaled_dot_product_attention`` (a flash kernel on CPU and GPU); the explicit path in
:mod:`core.ops.softmax` shares its mask semantics and provides attention matrices.
"""

from __future__ import annotations

from typing import Any

import torch

from core.attention.base import ProjectedAttention
from core.ops.softmax import softmax_attention, softmax_attention_weights
from core.registry import register_attention


@register_attention(
    "softmax",
    causal=True,
    key_padding_mask=True,
    approximates=None,
    incremental=True,
    complexity="O(N^2 d)",
    summary="exact softmax(q k^T / sqrt(d)) v through scaled_dot_product_attention (Vaswani et al., 2017)",
)
class SoftmaxAttention(ProjectedAttention):
    """Exact multi-head softmax attention.

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): autoregressive mask. Default: False.
        attention_dropout (float): dropout on the attention weights (training only). Default: 0.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    def __init__(self, dim: int, num_heads: int, causal: bool = False, *, attention_dropout: float = 0.0, **kwargs):
        super().__init__(dim, num_heads, causal, **kwargs)
        self.attention_dropout = attention_dropout

    def attend(self, q, k, v, key_padding_mask, x):
        p = self.attention_dropout if self.training else 0.0
        return softmax_attention(q, k, v, key_padding_mask, causal=self.causal, dropout_p=p)

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        return softmax_attention_weights(q, k, mask, causal=self.causal)

    def step(self, x_t: torch.Tensor, state: dict[str, Any] | None = None):
        """Decode one token with a key/value cache; ``x_t: (B, D)`` -> ``(B, D)``."""
        self.check_step_input(x_t)
        q, k, v = self.project_qkv(x_t[:, None, :])  # (B, H, 1, Dh)
        if state:
            k = torch.cat([state["k"], k], dim=2)
            v = torch.cat([state["v"], v], dim=2)
        out = softmax_attention(q, k, v)  # the newest token sees the whole cache
        y = self.out_proj(self.merge_heads(out))[:, 0]
        return y, {"k": k, "v": v}
