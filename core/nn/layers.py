"""Transformer layers that take any attention module with the core interface ``attn(x, key_padding_mask)``.

- :class:`EncoderLayer`: pre-norm (LRA, DeiT) or post-norm (the Flowformer/mvts time-series encoder).
- :class:`DecoderBlock`: a causal pre-norm GPT block with token-by-token decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from core.nn.dropout import Dropout
from core.registry import build_attention

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


class FeedForward(nn.Module):
    """``Linear(dim, hidden) -> activation -> dropout -> Linear(hidden, dim)``."""

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, activation: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = _activation(activation)
        self.dropout = Dropout(dropout)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(self.act(self.fc1(x))))


class EncoderLayer(nn.Module):
    """Encoder layer around an attention module.

    Pre-norm: ``x += drop(attn(LN x)); x += drop(ffn(LN x))``.
    Post-norm: ``x = LN(x + drop(attn x)); x = LN(x + drop(ffn x))``.

    Args:
        attention (nn.Module): self-attention with the core interface.
        dim (int): width D.
        ffn_dim (int): hidden width of the feed-forward block.
        dropout (float): residual and feed-forward dropout. Default: 0.1.
        activation (str): "gelu" or "relu". Default: "gelu".
        norm_first (bool): pre-norm if True, post-norm otherwise. Default: True.
        ffn_real_tokens_only (bool): with a key padding mask, run the feed-forward block on the real tokens only
            (padded ones get a zero feed-forward output). Real tokens' outputs are unchanged when the attention
            honours the mask; the saving is the padded fraction of the layer's largest products. Default: False.
    """

    def __init__(
        self,
        attention: nn.Module,
        dim: int,
        ffn_dim: int,
        dropout: float = 0.1,
        activation: str = "gelu",
        norm_first: bool = True,
        ffn_real_tokens_only: bool = False,
    ) -> None:
        super().__init__()
        self.attention = attention
        self.ffn = FeedForward(dim, ffn_dim, dropout, activation)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first
        self.ffn_real_tokens_only = ffn_real_tokens_only

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (B, N, D)``, ``key_padding_mask: (B, N)`` bool (True = real) -> ``(B, N, D)``."""
        if self.norm_first:
            x = x + self.dropout(self.attention(self.norm1(x), key_padding_mask=key_padding_mask))
            return x + self.dropout(self.feed_forward(self.norm2(x), key_padding_mask))
        x = self.norm1(x + self.dropout(self.attention(x, key_padding_mask=key_padding_mask)))
        return self.norm2(x + self.dropout(self.feed_forward(x, key_padding_mask)))

    def feed_forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The feed-forward block on ``x: (B, N, D)``, on the real tokens only if ``ffn_real_tokens_only``."""
        if not self.ffn_real_tokens_only or key_padding_mask is None:
            return self.ffn(x)
        flat = x.reshape(-1, x.shape[-1])  # (B N, D)
        real = key_padding_mask.reshape(-1).nonzero().squeeze(1)  # (T,)
        out = self.ffn(flat.index_select(0, real))  # (T, D)
        return torch.zeros_like(flat, dtype=out.dtype).index_copy(0, real, out).view(x.shape)


class DecoderBlock(nn.Module):
    """Causal pre-norm GPT block: ``x += drop(attn(LN x)); x += drop(mlp(LN x))``.

    Args:
        attention (nn.Module): a causal attention module (built with ``causal=True``).
        dim (int): width D.
        ffn_dim (int): hidden width of the MLP (GPT uses 4 D).
        dropout (float): residual dropout. Default: 0.1.
        activation (str): "gelu" or "relu". Default: "gelu".

    Raises:
        ValueError: if the attention module is not causal.
    """

    def __init__(self, attention: nn.Module, dim: int, ffn_dim: int, dropout: float = 0.1, activation: str = "gelu"):
        super().__init__()
        if not getattr(attention, "causal", False):
            raise ValueError(
                f"DecoderBlock needs a causal attention module, got {type(attention).__name__} with causal=False; "
                "build it with build_attention(name, dim, heads, causal=True)"
            )
        self.attention = attention
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim, ffn_dim, dropout=0.0, activation=activation)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x: (B, N, D)`` -> ``(B, N, D)``; output t depends on inputs <= t only."""
        x = x + self.dropout(self.attention(self.norm1(x), key_padding_mask=key_padding_mask))
        return x + self.dropout(self.mlp(self.norm2(x)))

    def step(self, x_t: torch.Tensor, state: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """One decoding step ``x_t: (B, D)`` -> ``(B, D)``, with the attention's recurrent state."""
        attended, state = self.attention.step(self.norm1(x_t), state)
        h = x_t + self.dropout(attended)
        return h + self.dropout(self.mlp(self.norm2(h))), state


def build_layers(
    schedule: Sequence[str],
    dim: int,
    num_heads: int,
    ffn_dim: int,
    *,
    dropout: float = 0.1,
    activation: str = "gelu",
    norm_first: bool = True,
    causal: bool = False,
    attention_options: dict[str, dict[str, Any]] | None = None,
    ffn_real_tokens_only: bool = False,
) -> nn.ModuleList:
    """One layer per schedule entry, each with the attention named there.

    Args:
        schedule: attention names per layer, e.g. ``primal_plus_schedule(2)`` = ["softmax", "primal"].
        attention_options: per-name options, e.g. ``{"primal": {"low_rank": 30}}``.
        causal: build :class:`DecoderBlock` s with causal attention instead of encoder layers.
        ffn_real_tokens_only: encoder layers skip padded tokens in the feed-forward block (see
            :class:`EncoderLayer`).
    """
    options = attention_options or {}
    layers = []
    for name in schedule:
        attention = build_attention(name, dim, num_heads, causal=causal, **options.get(name, {}))
        if causal:
            layers.append(DecoderBlock(attention, dim, ffn_dim, dropout, activation))
        else:
            layers.append(
                EncoderLayer(attention, dim, ffn_dim, dropout, activation, norm_first, ffn_real_tokens_only)
            )
    return nn.ModuleList(layers)
