"""BigBird block-sparse attention (Zaheer et al., NeurIPS 2020, "Big Bird: Transformers for Longer Sequences").

Sliding-window, global and random key blocks per query block (the ITC form); see :mod:`core.ops.block_sparse`.
"""

from __future__ import annotations

import torch

from core.attention.base import ProjectedAttention
from core.ops.block_sparse import bigbird_attention, bigbird_attention_weights
from core.registry import register_attention


@register_attention(
    "bigbird",
    causal=False,
    key_padding_mask=True,
    approximates="softmax",
    complexity="O(N b (5 + r) d)",
    summary="softmax over window + global + random key blocks per query block (Zaheer et al., 2020, ITC)",
)
class BigBirdAttention(ProjectedAttention):
    """Block-sparse softmax attention.

    The random blocks are drawn from ``seed`` and the number of blocks, once per sequence length, so every call
    and every batch element uses the same pattern (upstream reseeds numpy inside every forward to the same end).

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): must be False.
        block_size (int): b, tokens per block. Default: 64 (upstream LRA).
        num_random (int): r, random key blocks per query block. Default: 3 (upstream LRA).
        seed (int): seed of the random blocks. Default: 0.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    contract_exemptions = {
        "padding_equals_unpadded": "the random blocks and the global last block depend on the padded length N"
    }

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        block_size: int = 64,
        num_random: int = 3,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(dim, num_heads, causal, **kwargs)
        if block_size < 1 or num_random < 0:
            raise ValueError(f"block_size must be >= 1 and num_random >= 0, got {block_size} and {num_random}")
        self.block_size, self.num_random, self.seed = block_size, num_random, seed

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, block_size={self.block_size}, num_random={self.num_random}"

    def attend(self, q, k, v, key_padding_mask, x):
        return bigbird_attention(q, k, v, key_padding_mask, self.block_size, self.num_random, self.seed)

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        return bigbird_attention_weights(q, k, mask, self.block_size, self.num_random, self.seed)
