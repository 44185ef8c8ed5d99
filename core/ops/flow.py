"""Flow-Attention ops (Wu et al., ICML 2022, "Flowformer: Linearizing Transformers with Conservation Flows").

Attention is read as a flow network: values flow from sources (keys) to sinks (queries) along
non-negative capacities phi(q_i)^T phi(k_j), phi = sigmoid. Per head, with real keys j and real queries i:

    I_i = (phi(q_i) + eps)^T (sum_j phi(k_j) + eps)              incoming flow of sink i
    O_j = (phi(k_j) + eps)^T (sum_i phi(q_i) + eps)              outgoing flow of source j
    I^_i = (phi(q_i) + eps)^T (sum_j phi(k_j) / O_j + eps)       flow into i when sources are conserved
    O^_j = (phi(k_j) + eps)^T (sum_i phi(q_i) / I_i + eps)       flow out of j when sinks are conserved
    out_i = sigmoid(I^_i) * phi(q_i)^T / I_i * sum_j phi(k_j) (m softmax_j(O^_j) v_j)^T

(allocation of sink i, competition among the m sources). The causal form replaces every sum by a prefix
sum, rescales by the number of tokens seen, and takes the competition softmax over the keys seen so far.
Upstream clamps O^ to [-1, 1] (``source_clamp``); its time-series code does not.

Queries and keys given to these functions are already feature-mapped (non-negative).
"""

from __future__ import annotations

import torch

from core.ops.linear import accumulation_dtype, causal_linear_attention, linear_attention

DEFAULT_EPS = 1e-6


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise inner products ``[..., N, F] x [..., N or 1, F] -> [..., N]``."""
    return (a * b).sum(dim=-1)


def _token_counts(mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """Number of real tokens (non-causal, ``[B, 1, 1]``) or seen so far (causal, ``[B, 1, N]``), at least 1."""
    if causal:
        return torch.cumsum(mask, dim=-1).clamp(min=1.0)[:, None, :]
    return mask.sum(dim=-1).clamp(min=1.0)[:, None, None]


def flow_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    eps: float = DEFAULT_EPS,
    source_clamp: float | None = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-token flow factors: query scale ``1/I`` (times the count in causal form), allocation, competition.

    Args:
        q (torch.Tensor): query features ``[B, H, N, F]``, non-negative.
        k (torch.Tensor): key features ``[B, H, N, F]``, non-negative.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        causal (bool): prefix sums instead of full sums.
        eps (float): the stabiliser of the upstream code.
        source_clamp (float, optional): clamp ``O^`` to ``[-c, c]``; None disables the clamp.

    Returns:
        ``(query_scale [B, H, N], allocation [B, H, N], competition [B, H, N])`` in the accumulation dtype, with
        ``out_i = allocation_i * query_scale_i * phi(q_i)^T sum_j phi(k_j) competition_j v_j^T``; padded keys
        have zero competition.
    """
    acc = accumulation_dtype(q.dtype)
    b, _, n, _ = q.shape
    q, k = q.to(acc), k.to(acc)
    if key_padding_mask is None:
        mask = torch.ones(b, n, dtype=acc, device=q.device)
    else:
        mask = key_padding_mask.to(acc)
    real = mask[:, None, :, None]  # (B, 1, N, 1)
    qm, km = q * real, k * real
    count = _token_counts(mask, causal)
    total = (lambda t: torch.cumsum(t, dim=-2)) if causal else (lambda t: t.sum(dim=-2, keepdim=True))

    incoming = _dot(q + eps, total(km) + eps)  # (B, H, N)
    outgoing = _dot(k + eps, total(qm) + eps)
    if causal:  # the causal form compares prefix flows with their mean over the tokens seen
        incoming, outgoing = incoming / count, outgoing / count
    conserved_sink = _dot(q + eps, total(km / outgoing[..., None]) + eps)
    conserved_source = _dot(k + eps, total(qm / incoming[..., None]) + eps)
    if causal:
        conserved_sink, conserved_source = conserved_sink / count, conserved_source / count
    if source_clamp is not None:
        conserved_source = conserved_source.clamp(min=-source_clamp, max=source_clamp)

    allocation = torch.sigmoid(conserved_sink)  # the upstream factor n / m is 1 in self-attention
    is_real = mask[:, None, :] > 0
    logits = conserved_source.masked_fill(~is_real, float("-inf"))
    if causal:
        log_share = logits - torch.logcumsumexp(logits, dim=-1)
        competition = torch.where(is_real, torch.exp(log_share), torch.zeros_like(log_share)) * count
    else:
        empty = ~is_real.any(dim=-1, keepdim=True)  # a fully padded sequence: finite, meaningless output
        logits = torch.where(empty, conserved_source, logits)
        competition = torch.softmax(logits, dim=-1) * count
    query_scale = 1.0 / (incoming * count) if causal else 1.0 / incoming
    return query_scale, allocation, competition


def flow_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    eps: float = DEFAULT_EPS,
    source_clamp: float | None = 1.0,
    chunk_size: int = 64,
) -> torch.Tensor:
    """Flow-Attention in O(N F Dv): the flow factors, then one (causal) linear-attention product.

    Args:
        q (torch.Tensor): query features ``[B, H, N, F]``, non-negative (sigmoid of the projections).
        k (torch.Tensor): key features ``[B, H, N, F]``, non-negative.
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``; padded tokens take no part in any flow.
        causal (bool): query i sees keys j <= i only (the causal form of the upstream code).
        eps (float): stabiliser.
        source_clamp (float, optional): clamp of the conserved source flow; None disables it.
        chunk_size (int): chunk length of the causal product.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]`` in the dtype of ``v``.
    """
    query_scale, allocation, competition = flow_weights(q, k, key_padding_mask, causal, eps, source_clamp)
    acc = query_scale.dtype
    q_scaled = q.to(acc) * query_scale[..., None]
    v_weighted = v.to(acc) * competition[..., None]
    if causal:
        out = causal_linear_attention(
            q_scaled, k.to(acc), v_weighted, key_padding_mask, chunk_size=chunk_size, normalize=False
        )
    else:
        out = linear_attention(q_scaled, k.to(acc), v_weighted, key_padding_mask, normalize=False)
    return (out * allocation[..., None]).to(v.dtype)


def flow_attention_matrix(
    q: torch.Tensor,
    k: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    eps: float = DEFAULT_EPS,
    source_clamp: float | None = 1.0,
) -> torch.Tensor:
    """The explicit ``[B, H, N, N]`` matrix that Flow-Attention applies to the values (for spectra and tests)."""
    query_scale, allocation, competition = flow_weights(q, k, key_padding_mask, causal, eps, source_clamp)
    acc = query_scale.dtype
    scores = torch.matmul(q.to(acc), k.to(acc).transpose(-1, -2))
    if causal:
        scores = scores.tril()
    return (allocation * query_scale)[..., None] * scores * competition[..., None, :]


def flow_attention_step(
    q_t: torch.Tensor,
    k_t: torch.Tensor,
    v_t: torch.Tensor,
    state: dict[str, torch.Tensor] | None = None,
    eps: float = DEFAULT_EPS,
    source_clamp: float | None = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One token of causal Flow-Attention: the prefix sums of the causal form, carried as a state.

    Args:
        q_t, k_t (torch.Tensor): features ``[B, H, F]`` of the new token.
        v_t (torch.Tensor): its value ``[B, H, Dv]``.
        state (dict, optional): the state returned by the previous step; None starts a sequence.
        eps, source_clamp: as in :func:`flow_attention`.

    Returns:
        ``([B, H, Dv], state)``; the outputs equal those of ``flow_attention(..., causal=True)`` position by position.
    """
    acc = accumulation_dtype(q_t.dtype)
    q_t, k_t, v_t = q_t.to(acc), k_t.to(acc), v_t.to(acc)
    if state is None:
        zeros = torch.zeros_like(k_t)
        state = {
            "count": 0, "keys": zeros, "queries": zeros, "keys_by_outgoing": zeros, "queries_by_incoming": zeros,
            "log_total": torch.full(k_t.shape[:-1], float("-inf"), dtype=acc, device=k_t.device),
            "kv": torch.zeros(*k_t.shape, v_t.shape[-1], dtype=acc, device=k_t.device),
        }
    count = state["count"] + 1
    keys, queries = state["keys"] + k_t, state["queries"] + q_t
    incoming = _dot(q_t + eps, keys + eps) / count
    outgoing = _dot(k_t + eps, queries + eps) / count
    keys_by_outgoing = state["keys_by_outgoing"] + k_t / outgoing[..., None]
    queries_by_incoming = state["queries_by_incoming"] + q_t / incoming[..., None]
    allocation = torch.sigmoid(_dot(q_t + eps, keys_by_outgoing + eps) / count)
    source = _dot(k_t + eps, queries_by_incoming + eps) / count
    if source_clamp is not None:
        source = source.clamp(min=-source_clamp, max=source_clamp)
    log_total = torch.logaddexp(state["log_total"], source)
    competition = torch.exp(source - log_total) * count
    kv = state["kv"] + k_t[..., :, None] * (v_t * competition[..., None])[..., None, :]
    out = torch.matmul(q_t[..., None, :], kv)[..., 0, :] * (allocation / (incoming * count))[..., None]
    new_state = {
        "count": count, "keys": keys, "queries": queries, "keys_by_outgoing": keys_by_outgoing,
        "queries_by_incoming": queries_by_incoming, "log_total": log_total, "kv": kv,
    }
    return out, new_state


def reference_flow_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    eps: float = DEFAULT_EPS,
    source_clamp: float | None = 1.0,
) -> torch.Tensor:
    """Direct transcription of the upstream Flow-Attention (no padding), step by step as the paper writes it.

    The causal form materialises the prefix sums of ``phi(k_j) v_j^T`` (``[B, H, N, F, Dv]``), as upstream does.
    """
    n = q.shape[-2]
    if causal:
        seen = torch.arange(1, n + 1, dtype=q.dtype, device=q.device)  # tokens seen by position i
        sink_in = seen / torch.einsum("bhnf,bhnf->bhn", q + eps, k.cumsum(dim=2) + eps)
        source_out = seen / torch.einsum("bhnf,bhnf->bhn", k + eps, q.cumsum(dim=2) + eps)
        sink_cons = torch.einsum("bhnf,bhnf->bhn", q + eps, (k * source_out[..., None]).cumsum(dim=2) + eps) / seen
        source_cons = torch.einsum("bhnf,bhnf->bhn", k + eps, (q * sink_in[..., None]).cumsum(dim=2) + eps) / seen
        if source_clamp is not None:
            source_cons = source_cons.clamp(-source_clamp, source_clamp)
        allocation = torch.sigmoid(sink_cons)
        weights = torch.exp(source_cons)
        competition = weights / weights.cumsum(dim=-1) * seen
        states = torch.einsum("bhnf,bhnd->bhnfd", k, v * competition[..., None]).cumsum(dim=2)
        out = torch.einsum("bhnf,bhnfd->bhnd", q * (sink_in / seen)[..., None], states)
        return out * allocation[..., None]
    sink_in = 1.0 / torch.einsum("bhnf,bhf->bhn", q + eps, k.sum(dim=2) + eps)
    source_out = 1.0 / torch.einsum("bhnf,bhf->bhn", k + eps, q.sum(dim=2) + eps)
    sink_cons = torch.einsum("bhnf,bhf->bhn", q + eps, (k * source_out[..., None]).sum(dim=2) + eps)
    source_cons = torch.einsum("bhnf,bhf->bhn", k + eps, (q * sink_in[..., None]).sum(dim=2) + eps)
    if source_clamp is not None:
        source_cons = source_cons.clamp(-source_clamp, source_clamp)
    allocation = torch.sigmoid(sink_cons)
    competition = torch.softmax(source_cons, dim=-1) * n
    kv = torch.einsum("bhnf,bhnd->bhfd", k, v * competition[..., None])
    out = torch.einsum("bhnf,bhfd->bhnd", q * sink_in[..., None], kv)
    return out * allocation[..., None]
