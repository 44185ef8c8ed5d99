"""Linear attention ops (Katharopoulos et al., 2020, "Transformers are RNNs"), on feature-mapped q and k.

For non-negative features phi(q), phi(k):

    out_i = phi(q_i)^T S / (phi(q_i)^T z + eps),  S = sum_j phi(k_j) v_j^T,  z = sum_j phi(k_j)

with the sums over all real keys (non-causal) or keys j <= i (causal). Three causal forms agree:
the chunked form (matmuls inside chunks, a carried state between them, never an N x D x Dv tensor),
the recurrent step used for decoding, and the naive prefix-sum reference. Sums accumulate in at least
float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.ops.chunked_causal import chunked_causal_product

DEFAULT_EPS = 1e-6


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0, the map of Katharopoulos et al."""
    return F.elu(x) + 1.0


def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32 for sums (float64 stays float64)."""
    return torch.promote_types(dtype, torch.float32)


def _masked_keys(k: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
    return k if key_padding_mask is None else k * key_padding_mask[:, None, :, None].to(k.dtype)


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
    normalize: bool = True,
) -> torch.Tensor:
    """Non-causal normalised linear attention.

    Args:
        q (torch.Tensor): query features ``[B, H, N, F]`` (non-negative).
        k (torch.Tensor): key features ``[B, H, N, F]`` (non-negative).
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        eps (float): added to the denominator.
        normalize (bool): divide by ``phi(q_i)^T z``; False returns the raw kernel sums.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]`` in the dtype of ``v``.
    """
    acc = accumulation_dtype(q.dtype)
    k = _masked_keys(k.to(acc), key_padding_mask)
    kv = torch.matmul(k.transpose(-1, -2), v.to(acc))  # (B, H, F, Dv)
    q = q.to(acc)
    if not normalize:
        return torch.matmul(q, kv).to(v.dtype)
    z = k.sum(dim=-2)  # (B, H, F)
    den = torch.matmul(q, z.unsqueeze(-1))  # (B, H, N, 1)
    return (torch.matmul(q, kv) / (den + eps)).to(v.dtype)


def causal_linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    eps: float = DEFAULT_EPS,
    chunk_size: int = 64,
    initial_state: tuple[torch.Tensor, torch.Tensor] | None = None,
    return_state: bool = False,
    normalize: bool = True,
):
    """Causal linear attention in chunks: matmuls within a chunk, running states between chunks.

    The normaliser rides along as a ones column of the values (``[v, 1]``), so numerator and denominator come out
    of the same matmuls. Every step is batched over heads and chunks, in one autograd node with its gradients
    written out (:mod:`core.ops.chunked_causal`). Memory is O(N C + (N / C) F Dv) per head; no ``[N, F, Dv]``
    tensor is formed.

    Args:
        q (torch.Tensor): query features ``[B, H, N, F]``.
        k (torch.Tensor): key features ``[B, H, N, F]``.
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``; padded keys contribute nothing.
        eps (float): added to the denominator.
        chunk_size (int): C, tokens per chunk.
        initial_state (tuple, optional): ``(S [B, H, F, Dv], z [B, H, F])`` carried in from earlier tokens.
        return_state (bool): also return the final ``(S, z)``.
        normalize (bool): divide by ``phi(q_i)^T z_i``; False returns the raw causal kernel sums.

    Returns:
        ``[B, H, N, Dv]``, and the final state if ``return_state``.
    """
    dv = v.shape[-1]
    acc = accumulation_dtype(q.dtype)
    k = _masked_keys(k.to(acc), key_padding_mask)
    state = None if initial_state is None else _joined_state(initial_state, normalize, acc)
    out, final = chunked_causal_product(q.to(acc), k, v.to(acc), state, eps, normalize, chunk_size)
    out = out.to(v.dtype)
    if not return_state:
        return out
    return out, (final[..., :dv], final[..., dv] if normalize else _key_sums(k, initial_state, acc))


def _joined_state(state: tuple[torch.Tensor, torch.Tensor], normalize: bool, dtype: torch.dtype) -> torch.Tensor:
    """``(S [B, H, F, Dv], z [B, H, F])`` -> ``[S, z]`` (``[B, H, F, Dv + 1]``), or S alone without normalisation."""
    s, z = state
    return torch.cat([s, z.unsqueeze(-1)], dim=-1).to(dtype) if normalize else s.to(dtype)


def _key_sums(k: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None, dtype: torch.dtype) -> torch.Tensor:
    """``z`` of the final state when the values carry no ones column: ``sum_j phi(k_j)`` (+ the carried z)."""
    z = k.sum(dim=-2)
    return z if state is None else z + state[1].to(dtype)


def linear_attention_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor] | None = None,
    eps: float = DEFAULT_EPS,
    normalize: bool = True,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """One recurrent step: ``S += phi(k_t) v_t^T``, ``z += phi(k_t)``, ``out = phi(q_t)^T S / (phi(q_t)^T z + eps)``.

    Args:
        q_t, k_t (torch.Tensor): features ``[B, H, F]``.
        v_t (torch.Tensor): values ``[B, H, Dv]``.
        state (tuple, optional): ``(S [B, H, F, Dv], z [B, H, F])``; None starts from zeros.

    Returns:
        ``([B, H, Dv], (S, z))``.
    """
    acc = accumulation_dtype(q_t.dtype)
    q_t, k_t, v_t = q_t.to(acc), k_t.to(acc), v_t.to(acc)
    if state is None:
        s = torch.zeros(*k_t.shape, v_t.shape[-1], dtype=acc, device=k_t.device)
        z = torch.zeros_like(k_t)
    else:
        s, z = state
    s = s + k_t.unsqueeze(-1) * v_t.unsqueeze(-2)
    z = z + k_t
    num = torch.matmul(q_t.unsqueeze(-2), s).squeeze(-2)
    if not normalize:
        return num, (s, z)
    den = (q_t * z).sum(dim=-1, keepdim=True)
    return num / (den + eps), (s, z)


def causal_linear_attention_prefix_sum(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, eps: float = DEFAULT_EPS
) -> torch.Tensor:
    """Naive causal form with explicit prefix sums of ``phi(k) v^T`` (materialises ``[B, H, N, F, Dv]``).

    A reference only: the formulation of the popular packages, kept to check the chunked form.
    """
    s = torch.cumsum(k.unsqueeze(-1) * v.unsqueeze(-2), dim=2)  # (B, H, N, F, Dv)
    z = torch.cumsum(k, dim=2)
    num = torch.matmul(q.unsqueeze(-2), s).squeeze(-2)
    den = (q * z).sum(dim=-1, keepdim=True)
    return num / (den + eps)

