"""Reformer's LSH attention (Kitaev, Kaiser, Levskaya, ICLR 2020, "Reformer: The Efficient Transformer").

Shared-QK softmax attention restricted to angular-LSH buckets, sorted and chunked; see :mod:`core.ops.lsh`.
"""

from __future__ import annotations

import torch

from core.attention.base import ProjectedAttention
from core.ops.lsh import lsh_attention, lsh_attention_weights, lsh_buckets
from core.registry import register_attention


@register_attention(
    "reformer",
    causal=False,
    key_padding_mask=True,
    approximates="softmax",
    complexity="O(N log N + N c R d)",
    summary="shared-QK softmax inside angular-LSH buckets, sorted and chunked, R hash rounds (Kitaev et al., 2020)",
)
class ReformerAttention(ProjectedAttention):
    """Multi-round LSH attention with shared queries and keys (``q_proj`` projects both; no ``k_proj``).

    The hash rotations are a buffer drawn once from ``hash_seed`` (upstream draws new ones on every call), so
    the layer is a deterministic function and batch elements never influence each other. Non-causal only:
    a future token's bucket moves the chunk boundaries that earlier tokens see.

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): must be False.
        num_hashes (int): R, hash rounds. Default: 2 (the LRA setting).
        num_buckets (int): buckets per round (even). Default: 32 (upstream derives it from N; fixed here so that
            a token's bucket does not depend on the sequence length).
        chunk_size (int): c, tokens per chunk; each chunk also sees the chunk before it. Default: 64.
        hash_seed (int): seed of the rotations. Default: 0.
        dedupe (bool): count a key once however many rounds reach it (the paper's correction); False keeps the
            upstream (HuggingFace) combination. Default: False.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    contract_exemptions = {
        "shared_projections": "shared-QK attention: q_proj projects queries and keys, there is no k_proj to load into"
    }

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        num_hashes: int = 2,
        num_buckets: int = 32,
        chunk_size: int = 64,
        hash_seed: int = 0,
        dedupe: bool = False,
        **kwargs,
    ):
        super().__init__(dim, num_heads, causal, **kwargs)
        if num_buckets < 2 or num_buckets % 2:
            raise ValueError(f"num_buckets must be an even number >= 2 (buckets come in +/- pairs), got {num_buckets}")
        if num_hashes < 1 or chunk_size < 1:
            raise ValueError(f"num_hashes and chunk_size must be >= 1, got {num_hashes} and {chunk_size}")
        self.k_proj = None  # shared QK
        self.num_hashes, self.num_buckets, self.chunk_size, self.dedupe = num_hashes, num_buckets, chunk_size, dedupe
        generator = torch.Generator().manual_seed(hash_seed)
        rotations = torch.randn(num_heads, num_hashes, self.head_dim, num_buckets // 2, generator=generator)
        self.register_buffer("rotations", rotations, persistent=True)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_hashes={self.num_hashes}, num_buckets={self.num_buckets}, chunk={self.chunk_size}"

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Shared queries/keys and values, each ``(B, H, N, Dh)``; the keys returned are the queries."""
        q = self.split_heads(self.q_proj(x))
        return q, q, self.split_heads(self.v_proj(x))

    def attend(self, q, k, v, key_padding_mask, x):
        buckets = lsh_buckets(q, self.rotations, key_padding_mask)
        return lsh_attention(q, v, buckets, self.chunk_size, key_padding_mask, self.dedupe)

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, _, _ = self.project_qkv(x)
        return lsh_attention_weights(q, lsh_buckets(q, self.rotations, mask), self.chunk_size, mask, self.dedupe)
