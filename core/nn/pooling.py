"""Sequence pooling that respects padding: ``x: (B, N, D)``, ``mask: (B, N)`` bool, True = real token."""

from __future__ import annotations

import torch


def mean_pool(x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over real tokens: ``(B, N, D) -> (B, D)``."""
    if key_padding_mask is None:
        return x.mean(dim=1)
    weights = key_padding_mask[..., None].to(x.dtype)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def cls_pool(x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The first token: ``(B, N, D) -> (B, D)``."""
    return x[:, 0]


def flatten_pool(x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Zero padded steps, then flatten: ``(B, N, D) -> (B, N * D)`` (the mvts/Flowformer classifier head)."""
    if key_padding_mask is not None:
        x = x * key_padding_mask[..., None].to(x.dtype)
    return x.reshape(x.shape[0], -1)
