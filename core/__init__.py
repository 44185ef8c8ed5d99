"""primal-attention core: one attention library, built by name.

>>> import core
>>> attn = core.build_attention("primal", dim=512, num_heads=8, low_rank=20)
>>> core.list_attentions()          # every registered mechanism
>>> core.attention_info("linear")   # capability flags
"""

from core.losses import ksvd_loss
from core.registry import (
    AttentionInfo,
    attention_class,
    attention_info,
    build_attention,
    list_attentions,
    register_attention,
)

__all__ = [
    "AttentionInfo",
    "attention_class",
    "attention_info",
    "build_attention",
    "ksvd_loss",
    "list_attentions",
    "register_attention",
]
