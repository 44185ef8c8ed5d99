"""Attention modules, one file per mechanism family; each registers itself with :mod:`core.registry`."""

from core.attention.base import ProjectedAttention, load_shared_projections

__all__ = ["ProjectedAttention", "load_shared_projections"]
