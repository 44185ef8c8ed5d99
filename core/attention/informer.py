"""Informer's ProbSparse self-attention (Zhou et al., AAAI 2021, "Informer: Beyond Efficient Transformer for Long
Sequence Time-Series Forecasting"): only the u "active" queries (largest max-minus-mean score on a key sample)
attend exactly; the others output the mean of the values.
"""

from __future__ import annotations

import torch

from core.attention.base import ProjectedAttention
from core.ops.probsparse import probsparse_attention, probsparse_attention_weights
from core.registry import register_attention


@register_attention(
    "informer",
    causal=False,
    key_padding_mask=True,
    approximates="softmax",
    complexity="O(N log N d)",
    summary="ProbSparse: exact softmax for the top c ln L queries by max-mean score, mean(V) elsewhere (Informer)",
)
class InformerAttention(ProjectedAttention):
    """ProbSparse attention.

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): must be False (which queries are active depends on every key).
        factor (float): c; u and the key sample size are ``min(c ceil(ln L), L)`` for L real tokens. Default: 5
            (the Informer paper; Skyformer's LRA runs use ``ceil(128 / ln n)``).
        random_in_eval (bool): draw the key sample at random in eval mode too (as upstream). Default: False, a
            stratified, deterministic sample in eval mode; training always draws at random.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    def __init__(
        self, dim: int, num_heads: int, causal: bool = False, *, factor: float = 5.0, random_in_eval: bool = False, **kwargs
    ):
        super().__init__(dim, num_heads, causal, **kwargs)
        if causal:
            raise ValueError("informer has no causal form here: which queries are active depends on every key")
        if factor <= 0:
            raise ValueError(f"factor must be positive, got {factor}")
        self.factor = factor
        self.random_in_eval = random_in_eval

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, factor={self.factor}"

    def attend(self, q, k, v, key_padding_mask, x):
        random = self.training or self.random_in_eval
        return probsparse_attention(q, k, v, key_padding_mask, self.factor, random)

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        return probsparse_attention_weights(q, k, mask, self.factor, self.training or self.random_in_eval)
