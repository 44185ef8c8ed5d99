"""Positional encodings: learned (Flowformer/mvts and LRA style) and sinusoidal (Vaswani et al., 2017)."""

from __future__ import annotations

import math

import torch
from torch import nn

from core.nn.dropout import Dropout


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned ``(max_len, dim)`` table to ``x: (B, N, dim)``, followed by dropout.

    Args:
        max_len (int): longest sequence.
        dim (int): width.
        dropout (float): dropout after the addition. Default: 0.
        init (str): "uniform" (U(-0.02, 0.02), the mvts/time-series code) or "normal" (N(0, 0.02)).
    """

    def __init__(self, max_len: int, dim: int, dropout: float = 0.0, init: str = "uniform") -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, dim))
        if init == "uniform":
            nn.init.uniform_(self.weight, -0.02, 0.02)
        elif init == "normal":
            nn.init.normal_(self.weight, std=0.02)
        else:
            raise ValueError(f"init must be 'uniform' or 'normal', got {init!r}")
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        if n > self.weight.shape[0]:
            raise ValueError(f"sequence length {n} exceeds max_len={self.weight.shape[0]} of the position table")
        return self.dropout(x + self.weight[:n])


class SinusoidalPositionalEncoding(nn.Module):
    """Adds fixed sin/cos encodings (a buffer, not saved in the state dict) to ``x: (B, N, dim)``."""

    def __init__(self, max_len: int, dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
        table = torch.zeros(max_len, dim)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency[: dim // 2])
        self.register_buffer("table", table, persistent=False)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        if n > self.table.shape[0]:
            raise ValueError(f"sequence length {n} exceeds max_len={self.table.shape[0]} of the encoding")
        return self.dropout(x + self.table[:n].to(x.dtype))
