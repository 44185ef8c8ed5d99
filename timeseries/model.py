"""The UEA classifier of Primal-Attention's time-series experiments (Chen et al., NeurIPS 2023, section 4.1).

The mvts/Flowformer design: ``Linear(C, d) * sqrt(d)``, learnable positions, post-norm encoder layers, a final
LayerNorm, GELU and dropout, padded steps zeroed, then the flattened ``(L * d)`` sequence goes through one
linear layer. The attention of each layer is picked by name from the core registry.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from core.nn import Dropout, LearnedPositionalEmbedding, build_layers, flatten_pool


class UEAClassifier(nn.Module):
    """Transformer-encoder classifier for multivariate series.

    Args:
        num_features (int): C, channels per step.
        num_classes (int): K.
        max_len (int): L, the longest training series (the flatten head has ``L * d_model`` inputs).
        schedule (Sequence[str]): registry name of the attention in each layer, e.g. ["softmax", "primal"].
        d_model (int): width d. Default: 512.
        num_heads (int): heads. Default: 8.
        ffn_dim (int): feed-forward width. Default: 2048.
        dropout (float): dropout of positions, residuals, feed-forward and head. Default: 0.1.
        attention_options (dict, optional): per-name attention options, e.g. ``{"primal": {"low_rank": 40}}``.
        input_norm (bool): LayerNorm the scaled embedding before the first layer. The original code does not,
            so its first primal layer sees inputs of scale sqrt(d) (KSVD near 500 at the start). Default: False.
        mask_attention (bool): pass the padding mask to attention. False reproduces the official code, whose
            attention sees padded steps (and then batches are never trimmed). Default: True.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        max_len: int,
        schedule: Sequence[str],
        d_model: int = 512,
        num_heads: int = 8,
        ffn_dim: int = 2048,
        dropout: float = 0.1,
        attention_options: dict[str, dict[str, Any]] | None = None,
        input_norm: bool = False,
        mask_attention: bool = True,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.d_model = d_model
        self.mask_attention = mask_attention
        self.input_proj = nn.Linear(num_features, d_model)
        self.input_norm = nn.LayerNorm(d_model) if input_norm else nn.Identity()
        self.positions = LearnedPositionalEmbedding(max_len, d_model, dropout=dropout, init="uniform")
        self.layers = build_layers(
            list(schedule),
            d_model,
            num_heads,
            ffn_dim,
            dropout=dropout,
            activation="gelu",
            norm_first=False,
            attention_options=attention_options,
            ffn_real_tokens_only=mask_attention,  # padded steps never reach a real step's output
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.dropout = Dropout(dropout)
        self.head = nn.Linear(max_len * d_model, num_classes)

    def encode(self, x: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        """Per-step features ``(B, N, d)`` of ``x: (B, N, C)`` with mask ``(B, N)`` (True = real step), N <= L."""
        if x.dim() != 3 or x.shape[-1] != self.input_proj.in_features:
            raise ValueError(f"expected x of shape (B, N, {self.input_proj.in_features}), got {tuple(x.shape)}")
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence of {x.shape[1]} steps is longer than the model's max_len={self.max_len}; clip it")
        h = self.input_norm(self.input_proj(x) * math.sqrt(self.d_model))
        h = self.positions(h)
        attention_mask = key_padding_mask if self.mask_attention else None
        for layer in self.layers:
            h = layer(h, key_padding_mask=attention_mask)
        return self.dropout(F.gelu(self.final_norm(h)))

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, K)`` for ``x: (B, N, C)`` and mask ``(B, N)``; N may be shorter than L (the steps
        N..L are treated as padding)."""
        flat = flatten_pool(self.encode(x, key_padding_mask), key_padding_mask)  # (B, N * d)
        return F.linear(flat, self.head.weight[:, : flat.shape[1]], self.head.bias)
