"""The linear-attention family: kernel feature maps replace softmax so attention costs O(N d^2).

- ``linear``: Katharopoulos et al., 2020, "Transformers are RNNs": phi(x) = elu(x) + 1, normalised kernel
  sums; causal through chunked prefix states, with recurrent decoding.
- ``efficient``: Shen et al., 2021, "Efficient Attention": softmax of q over features, of k over the sequence,
  out = q (k^T v). Non-causal only (the softmax over the sequence sees every key).
- ``cosine``: the cosine linear attention Primal-Attention compares with: phi(x) = x / ||x||,
  out_i = sum_j cos(q_i, k_j) v_j / sqrt(L_i), L_i the number of keys query i sees.

Every member takes ``one_kv_head=True``: one key/value head of width D / H shared by all query heads (the
``one_kv_head`` of lucidrains' linear-attention-transformer, after Shazeer, 2019, "Fast Transformer Decoding:
One Write-Head is All You Need"); the key-value summary and the decoding state are then computed once.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.attention.base import ProjectedAttention
from core.ops.linear import (
    causal_linear_attention,
    elu_feature_map,
    linear_attention,
    linear_attention_step,
)
from core.ops.primal import cosine_features
from core.registry import register_attention


class _OneKVHead(ProjectedAttention):
    """Optional single key/value head shared by all query heads.

    With ``one_kv_head=True``, ``k_proj`` and ``v_proj`` map D to D / H and :meth:`project_qkv` returns keys and
    values of shape ``(B, 1, N, Dh)``, which broadcast against the H query heads.
    """

    def __init__(self, dim: int, num_heads: int, causal: bool = False, *, one_kv_head: bool = False, **kw):
        super().__init__(dim, num_heads, causal, **kw)
        self.one_kv_head = bool(one_kv_head)
        if self.one_kv_head:
            bias = self.k_proj.bias is not None
            self.k_proj = nn.Linear(dim, self.head_dim, bias=bias)
            self.v_proj = nn.Linear(dim, self.head_dim, bias=bias)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.one_kv_head:
            return super().project_qkv(x)
        q = self.split_heads(self.q_proj(x))
        return q, self.k_proj(x)[:, None], self.v_proj(x)[:, None]  # keys and values (B, 1, N, Dh)


class _KernelLinearAttention(_OneKVHead):
    """Linear attention with a feature map; subclasses set :meth:`features` and ``normalize``."""

    normalize = True

    def __init__(self, dim: int, num_heads: int, causal: bool = False, *, chunk_size: int = 64, eps: float = 1e-6, **kw):
        super().__init__(dim, num_heads, causal, **kw)
        self.chunk_size = chunk_size
        self.eps = eps

    def features(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rescale(self, out: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Post-scaling of unnormalised outputs (identity for normalised attention)."""
        return out

    def attend(self, q, k, v, key_padding_mask, x):
        qf, kf = self.features(q), self.features(k)
        if self.causal:
            kf, v = kf.expand(qf.shape[:-1] + kf.shape[-1:]), v.expand(qf.shape[:-1] + v.shape[-1:])
            out = causal_linear_attention(
                qf, kf, v, key_padding_mask, eps=self.eps, chunk_size=self.chunk_size, normalize=self.normalize
            )
        else:
            out = linear_attention(qf, kf, v, key_padding_mask, eps=self.eps, normalize=self.normalize)
        return self.rescale(out, key_padding_mask)

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        scores = torch.matmul(self.features(q), self.features(k).transpose(-1, -2))
        if mask is not None:
            scores = scores * mask[:, None, None, :].to(scores.dtype)
        if self.causal:
            scores = scores.tril()
        if self.normalize:
            return scores / (scores.sum(dim=-1, keepdim=True) + self.eps)
        return self.rescale(scores, mask)

    def step(self, x_t: torch.Tensor, state: dict[str, Any] | None = None):
        """Recurrent decoding of one token ``x_t: (B, D)`` with state ``(S, z)`` per head."""
        self.check_step_input(x_t)
        q, k, v = (t[:, :, 0] for t in self.project_qkv(x_t[:, None, :]))  # (B, H, Dh)
        previous = (state["S"], state["z"]) if state else None
        count = (state["count"] + 1) if state else 1
        out, (s, z) = linear_attention_step(
            self.features(q), self.features(k), v, previous, eps=self.eps, normalize=self.normalize
        )
        if not self.normalize:
            out = out / count**0.5
        y = self.out_proj(self.merge_heads(out[:, :, None].to(x_t.dtype)))[:, 0]
        return y, {"S": s, "z": z, "count": count}


@register_attention(
    "linear",
    causal=True,
    key_padding_mask=True,
    approximates=None,
    incremental=True,
    complexity="O(N d^2)",
    summary="phi(q)^T sum phi(k) v^T / phi(q)^T sum phi(k), phi = elu + 1 (Katharopoulos et al., 2020)",
)
class LinearAttention(_KernelLinearAttention):
    """Katharopoulos linear attention; ``chunk_size`` sets the causal chunk length, ``one_kv_head=True`` shares
    one key/value head among the query heads."""

    def features(self, t: torch.Tensor) -> torch.Tensor:
        return elu_feature_map(t)


@register_attention(
    "cosine",
    causal=True,
    key_padding_mask=True,
    approximates=None,
    incremental=True,
    complexity="O(N d^2)",
    summary="sum_j cos(q_i, k_j) v_j / sqrt(L_i): cosine-kernel linear attention (Primal-Attention's 'Cos.')",
)
class CosineAttention(_KernelLinearAttention):
    """Unnormalised cosine-kernel linear attention scaled by the square root of the number of keys seen
    (``one_kv_head`` as for ``linear``)."""

    normalize = False

    def features(self, t: torch.Tensor) -> torch.Tensor:
        return cosine_features(t)

    def rescale(self, out: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        n = out.shape[-2]
        if self.causal:
            seen = torch.arange(1, n + 1, device=out.device, dtype=out.dtype)
            if key_padding_mask is not None:
                seen = torch.cumsum(key_padding_mask.to(out.dtype), dim=1).clamp(min=1.0)[:, None, :]
            return out / seen.sqrt()[..., None]
        if key_padding_mask is None:
            return out / n**0.5
        real = key_padding_mask.sum(dim=1).clamp(min=1).to(out.dtype)
        return out / real.sqrt()[:, None, None, None]


@register_attention(
    "efficient",
    causal=False,
    key_padding_mask=True,
    approximates=None,
    complexity="O(N d^2)",
    summary="softmax_features(q) (softmax_seq(k)^T v) (Shen et al., 2021, 'Efficient Attention')",
)
class EfficientAttention(_OneKVHead):
    """Shen et al.'s efficient attention: each query's weights over keys sum to one, no N x N matrix.

    Unlike the popular implementation, no extra ``d^-1/2`` factor is applied (its causal path drops it).
    ``one_kv_head=True`` shares one key/value head among the query heads.
    """

    def attend(self, q, k, v, key_padding_mask, x):
        q = torch.softmax(q, dim=-1)
        if key_padding_mask is not None:
            empty = ~key_padding_mask.any(dim=1, keepdim=True)
            keep = (key_padding_mask | empty)[:, None, :, None]
            k = k.masked_fill(~keep, float("-inf"))
        k = torch.softmax(k, dim=-2)
        return torch.matmul(q, torch.matmul(k.transpose(-1, -2), v))

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        q = torch.softmax(q, dim=-1)
        if mask is not None:
            k = k.masked_fill(~mask[:, None, :, None], float("-inf"))
        return torch.matmul(q, torch.softmax(k, dim=-2).transpose(-1, -2))
