"""LSH attention ops (Kitaev, Kaiser, Levskaya, ICLR 2020, "Reformer: The Efficient Transformer").

Shared-QK attention restricted to hash buckets. Per hash round r, angular LSH assigns each token a bucket
``h_r(x) = argmax([x R_r; -x R_r])`` with a random rotation ``R_r``; tokens are sorted by (bucket, position)
and cut into chunks of length c; query i attends to the keys of its own bucket in its chunk and the chunk
before it (no wrap-around from the first chunk to the last). Keys are the unit-normalised queries,
``logit_ij = q_i . q_j / ||q_j||``; a token attends to itself only when nothing else is allowed (its logit
gets ``SELF_LOGIT``). Rounds are combined with weights ``softmax_r(logsumexp of round r's logits)``, which
equals one softmax over the union of the rounds' key sets in which a key counts once per round it appears in
(the upstream combination); with ``dedupe`` (the paper's correction) every key of the union counts once.

Padded tokens get a bucket of their own that sorts after every real one, so real tokens are sorted, chunked
and attended exactly as in the sequence without its pads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SELF_LOGIT = -1e5  # the upstream value for a token attending to itself


def _self_logit(dtype: torch.dtype) -> float:
    """``SELF_LOGIT``, kept finite in half precision (whose range ends at 65504)."""
    return max(SELF_LOGIT, torch.finfo(dtype).min / 2)


def lsh_buckets(
    x: torch.Tensor, rotations: torch.Tensor, key_padding_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Angular LSH buckets.

    Args:
        x (torch.Tensor): shared query/keys ``[B, H, N, D]``.
        rotations (torch.Tensor): ``[H, R, D, nb / 2]`` random projections, one per head and round.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``; padded tokens get bucket ``nb``.

    Returns:
        torch.Tensor: long ``[B, H, R, N]`` in ``[0, nb)`` (``nb`` for pads).
    """
    projected = torch.einsum("bhnd,hrdk->bhrnk", x, rotations.to(x.dtype))
    buckets = torch.cat([projected, -projected], dim=-1).argmax(dim=-1)
    if key_padding_mask is not None:
        buckets = buckets.masked_fill(~key_padding_mask[:, None, None, :], 2 * rotations.shape[-1])
    return buckets


def _chunk_windows(t: torch.Tensor, chunk: int) -> torch.Tensor:
    """``[..., nc * c, X] -> [..., nc, 2c, X]``: each chunk preceded by the chunk before it (zeros for the first)."""
    chunks = t.unflatten(-2, (-1, chunk))
    previous = torch.cat([torch.zeros_like(chunks[..., :1, :, :]), chunks[..., :-1, :, :]], dim=-3)
    return torch.cat([previous, chunks], dim=-2)


def _rounds_sharing(
    buckets: torch.Tensor, undo: torch.Tensor, chunk: int, tokens_q: torch.Tensor, tokens_k: torch.Tensor
) -> torch.Tensor:
    """In how many rounds key token j is in query token i's set (same bucket, same or previous chunk).

    Args:
        buckets, undo: ``[B, H, R, T]`` bucket and sorted position of every token in every round.
        tokens_q: ``[B, H, R, nc, c, 1]`` and tokens_k ``[B, H, R, nc, 1, 2c]`` token indices (>= 0).

    Returns:
        ``[B, H, R, nc, c, 2c]`` counts.
    """
    per_token = torch.stack([buckets, undo // chunk], dim=-1).transpose(2, 3).flatten(3)  # (B, H, T, 2R)

    def describe(tokens: torch.Tensor) -> torch.Tensor:
        flat = tokens.flatten(2)[..., None].expand(-1, -1, -1, per_token.shape[-1])
        return torch.gather(per_token, 2, flat).view(*tokens.shape, -1, 2)  # (..., R', 2)

    query, key = describe(tokens_q), describe(tokens_k)
    same_bucket = query[..., 0] == key[..., 0]
    gap = query[..., 1] - key[..., 1]
    return (same_bucket & ((gap == 0) | (gap == 1))).sum(dim=-1)


def lsh_attention(
    q: torch.Tensor,
    v: torch.Tensor,
    buckets: torch.Tensor,
    chunk_size: int,
    key_padding_mask: torch.Tensor | None = None,
    dedupe: bool = False,
) -> torch.Tensor:
    """Chunked shared-QK attention inside LSH buckets, O(R N c) per head.

    Args:
        q (torch.Tensor): shared queries/keys ``[B, H, N, D]``.
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        buckets (torch.Tensor): long ``[B, H, R, N]`` from :func:`lsh_buckets`.
        chunk_size (int): c; clipped to N.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``; padded keys are never attended.
        dedupe (bool): divide each logit's weight by the number of rounds sharing the pair (the paper's
            correction), so the result is one softmax over the union of the rounds' sets. Default False (upstream).

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    b, h, n, d = q.shape
    rounds = buckets.shape[2]
    c = max(1, min(chunk_size, n))
    total = -(-n // c) * c
    position = torch.arange(total, device=q.device)
    real = torch.ones(b, n, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask
    real = F.pad(real, (0, total - n), value=False)  # filler slots that complete the last chunk
    buckets = F.pad(buckets, (0, total - n), value=int(buckets.max()) + 1)
    order = torch.argsort(buckets * total + position, dim=-1)  # (B, H, R, total), stable by construction

    def sort(t: torch.Tensor) -> torch.Tensor:
        padded = F.pad(t, (0, 0, 0, total - n))[:, :, None].expand(-1, -1, rounds, -1, -1)
        return torch.gather(padded, 3, order[..., None].expand(-1, -1, -1, -1, t.shape[-1]))

    keys = F.normalize(q, dim=-1)
    q_sorted, k_sorted, v_sorted = sort(q), sort(keys), sort(v)  # (B, H, R, total, .)
    bucket_sorted = torch.gather(buckets, 3, order)
    real_sorted = torch.gather(real[:, None, None, :].expand(b, h, rounds, total), 3, order)

    q_chunks = q_sorted.unflatten(-2, (-1, c))  # (B, H, R, nc, c, D)
    k_window = _chunk_windows(k_sorted, c)  # (B, H, R, nc, 2c, D)
    v_window = _chunk_windows(v_sorted, c)
    order_q = order.unflatten(-1, (-1, c))[..., :, None]  # (B, H, R, nc, c, 1)
    order_k = _chunk_windows(order[..., None] + 1, c)[..., None, :, 0] - 1  # -1 marks the missing chunk
    bucket_q = bucket_sorted.unflatten(-1, (-1, c))[..., :, None]
    bucket_k = _chunk_windows(bucket_sorted[..., None], c)[..., None, :, 0]
    real_k = _chunk_windows(real_sorted[..., None].to(torch.int8), c)[..., None, :, 0].bool()

    logits = torch.matmul(q_chunks, k_window.transpose(-1, -2))  # (B, H, R, nc, c, 2c)
    is_self = order_q == order_k
    allowed = ((bucket_q == bucket_k) & real_k & (order_k >= 0)) | is_self
    logits = logits.masked_fill(is_self, _self_logit(logits.dtype)).masked_fill(~allowed, float("-inf"))
    undo = torch.argsort(order, dim=-1)
    if dedupe and rounds > 1:
        shared = _rounds_sharing(buckets, undo, c, order_q, order_k.clamp(min=0))
        logits = logits - torch.log(shared.clamp(min=1).to(logits.dtype))
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    out = torch.matmul(torch.exp(logits - lse), v_window)  # (B, H, R, nc, c, Dv)

    out = torch.gather(out.flatten(3, 4), 3, undo[..., None].expand(-1, -1, -1, -1, v.shape[-1]))[..., :n, :]
    lse = torch.gather(lse.flatten(3, 5), 3, undo)[..., :n]  # (B, H, R, N)
    weights = torch.softmax(lse, dim=2)[..., None]
    return (weights * out).sum(dim=2)


def lsh_allowed_counts(buckets: torch.Tensor, chunk_size: int, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Dense count of the rounds in which query i may attend to key j, ``[B, H, N, N]`` (a reference).

    Sorted positions are computed by comparison, without sorting: token i precedes token j when
    ``(bucket_i, i) < (bucket_j, j)``.
    """
    b, h, rounds, n = buckets.shape
    c = max(1, min(chunk_size, n))
    position = torch.arange(n, device=buckets.device)
    key = buckets * n + position  # (B, H, R, N)
    sorted_position = (key[..., None, :] < key[..., :, None]).sum(dim=-1)  # rank of each token
    chunk = sorted_position // c
    same_bucket = buckets[..., :, None] == buckets[..., None, :]
    near = (chunk[..., None, :] == chunk[..., :, None]) | (chunk[..., None, :] == chunk[..., :, None] - 1)
    allowed = same_bucket & near
    if key_padding_mask is not None:
        allowed = allowed & key_padding_mask[:, None, None, None, :]
    allowed = allowed | torch.eye(n, dtype=torch.bool, device=buckets.device)
    return allowed.sum(dim=2)


def lsh_attention_weights(
    q: torch.Tensor,
    buckets: torch.Tensor,
    chunk_size: int,
    key_padding_mask: torch.Tensor | None = None,
    dedupe: bool = False,
) -> torch.Tensor:
    """The dense ``[B, H, N, N]`` matrix of :func:`lsh_attention` (a reference, O(N^2)): one softmax over all keys,
    restricted to the union of the rounds' sets, each key weighted by the number of rounds it appears in (once
    with ``dedupe``)."""
    counts = lsh_allowed_counts(buckets, chunk_size, key_padding_mask).to(q.dtype)
    if dedupe:
        counts = counts.clamp(max=1.0)
    logits = torch.matmul(q, F.normalize(q, dim=-1).transpose(-1, -2))
    eye = torch.eye(q.shape[-2], dtype=torch.bool, device=q.device)
    logits = logits.masked_fill(eye, _self_logit(logits.dtype)) + torch.log(counts)
    return torch.softmax(logits, dim=-1)


def reference_lsh_attention(
    q: torch.Tensor,
    v: torch.Tensor,
    buckets: torch.Tensor,
    chunk_size: int,
    key_padding_mask: torch.Tensor | None = None,
    dedupe: bool = False,
) -> torch.Tensor:
    """Dense reference of :func:`lsh_attention`: ``lsh_attention_weights(...) @ v``."""
    return torch.matmul(lsh_attention_weights(q, buckets, chunk_size, key_padding_mask, dedupe), v)
