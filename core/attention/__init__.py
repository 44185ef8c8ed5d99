"""Attention modules, one file per mechanism family; each registers itself with :mod:`core.registry`."""

from core.attention.base import ProjectedAttention, load_shared_projections
from core.attention.image import LinearImageAttention

__all__ = ["LinearImageAttention", "ProjectedAttention", "load_shared_projections"]
