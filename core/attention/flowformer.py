"""Flow-Attention (Wu et al., ICML 2022, "Flowformer: Linearizing Transformers with Conservation Flows").

The linear-time baseline of the Primal-Attention time-series experiments; the math is in :mod:`core.ops.flow`.
"""

from __future__ import annotations

from typing import Any

import torch

from core.attention.base import ProjectedAttention
from core.ops.flow import DEFAULT_EPS, flow_attention, flow_attention_matrix, flow_attention_step
from core.registry import register_attention


@register_attention(
    "flowformer",
    causal=True,
    key_padding_mask=True,
    approximates=None,
    incremental=True,
    complexity="O(N d^2)",
    summary="flow conservation on sigmoid kernels: competition over sources, allocation to sinks (Wu et al., 2022)",
)
class FlowAttention(ProjectedAttention):
    """Multi-head Flow-Attention with phi = sigmoid.

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): the causal form (prefix flows, competition over the keys seen). Default: False.
        eps (float): stabiliser of the flow sums. Default: 1e-6.
        source_clamp (float, optional): clamp of the conserved source flow before the competition softmax, as
            in the upstream core code; None reproduces the upstream time-series code (no clamp). Default: 1.0.
        chunk_size (int): chunk length of the causal product. Default: 64.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        eps: float = DEFAULT_EPS,
        source_clamp: float | None = 1.0,
        chunk_size: int = 64,
        **kwargs,
    ):
        super().__init__(dim, num_heads, causal, **kwargs)
        if source_clamp is not None and source_clamp <= 0:
            raise ValueError(f"source_clamp must be positive or None, got {source_clamp}")
        self.eps = eps
        self.source_clamp = source_clamp
        self.chunk_size = chunk_size

    def attend(self, q, k, v, key_padding_mask, x):
        return flow_attention(
            torch.sigmoid(q),
            torch.sigmoid(k),
            v,
            key_padding_mask,
            causal=self.causal,
            eps=self.eps,
            source_clamp=self.source_clamp,
            chunk_size=self.chunk_size,
        )

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        return flow_attention_matrix(torch.sigmoid(q), torch.sigmoid(k), mask, self.causal, self.eps, self.source_clamp)

    def step(self, x_t: torch.Tensor, state: dict[str, Any] | None = None):
        """Causal decoding of one token ``x_t: (B, D)`` -> ``(B, D)``, carrying the prefix flows as the state."""
        self.check_step_input(x_t)
        q, k, v = (t[:, :, 0] for t in self.project_qkv(x_t[:, None, :]))  # (B, H, Dh)
        out, state = flow_attention_step(torch.sigmoid(q), torch.sigmoid(k), v, state, self.eps, self.source_clamp)
        return self.out_proj(self.merge_heads(out[:, :, None].to(x_t.dtype)))[:, 0], state
