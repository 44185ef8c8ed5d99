"""BigBird block-sparse attention ops (Zaheer et al., NeurIPS 2020, "Big Bird: Transformers for Longer
Sequences"), the ITC form: global tokens are the first and last blocks of the sequence itself.

With blocks of b tokens (nb blocks), query block i attends to key blocks

    {i - 1, i, i + 1} (sliding window)  U  {0, nb - 1} (global)  U  R(i) (r random blocks),

and the global query blocks 0 and nb - 1 attend to every key. Softmax runs over the union, so a key block
reached twice counts once. The pattern is a function of nb and a seed (:func:`bigbird_layout`), so it is the
same for every batch element and every call.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=64)
def bigbird_layout(num_blocks: int, num_random: int, seed: int) -> tuple[tuple[int, ...], ...]:
    """Key blocks of each non-global query block: the window, the globals, then the random blocks.

    Args:
        num_blocks (int): nb.
        num_random (int): r, random key blocks per query block (fewer when not enough blocks are left).
        seed (int): seed of the random choice (one draw per nb).

    Returns:
        For query blocks ``1 .. nb - 2``, a tuple of distinct key-block indices (empty when ``nb <= 2``).
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + num_blocks)
    layout = []
    for i in range(1, num_blocks - 1):
        fixed = list(dict.fromkeys([i - 1, i, i + 1, 0, num_blocks - 1]))
        candidates = [j for j in range(num_blocks) if j not in fixed]
        picks = torch.randperm(len(candidates), generator=generator)[:num_random].tolist()
        layout.append(tuple(fixed + sorted(candidates[p] for p in picks)))
    return tuple(layout)


def bigbird_block_mask(num_blocks: int, num_random: int, seed: int, device=None) -> torch.Tensor:
    """Bool ``[nb, nb]``: query block i may attend to key block j."""
    mask = torch.zeros(num_blocks, num_blocks, dtype=torch.bool, device=device)
    mask[0] = mask[-1] = True
    for i, blocks in enumerate(bigbird_layout(num_blocks, num_random, seed), start=1):
        mask[i, list(blocks)] = True
    return mask


def _pad_to_blocks(t: torch.Tensor, block: int) -> torch.Tensor:
    return F.pad(t, (0, 0, 0, (-t.shape[-2]) % block))


def _masked_softmax_attend(q, k, v, allowed, scale):
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    return torch.matmul(torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1), v)


def bigbird_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    block_size: int = 64,
    num_random: int = 3,
    seed: int = 0,
) -> torch.Tensor:
    """Block-sparse softmax attention in O(N b (5 + r) d): gathered key blocks per query block.

    Args:
        q, k (torch.Tensor): ``[B, H, N, D]``.
        v (torch.Tensor): ``[B, H, N, Dv]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``; padded keys are never attended. N need not be
            a multiple of the block size: the last block is completed with masked slots.
        block_size (int): b.
        num_random (int): r.
        seed (int): seed of the random blocks.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    b, h, n, d = q.shape
    scale = 1.0 / math.sqrt(d)
    real = torch.ones(b, n, dtype=torch.bool, device=q.device) if key_padding_mask is None else key_padding_mask
    real = F.pad(real, (0, (-n) % block_size), value=False)
    q, k, v = (_pad_to_blocks(t, block_size) for t in (q, k, v))
    total = q.shape[-2]
    nb = total // block_size
    position = torch.arange(total, device=q.device)
    out = torch.empty(b, h, total, v.shape[-1], dtype=v.dtype, device=v.device)

    # global query blocks (the first and the last) see every real key, and themselves
    rows = torch.cat([position[:block_size], position[-block_size:]]) if nb > 1 else position
    allowed = real[:, None, None, :] | (rows[:, None] == position[None, :])
    out[:, :, rows] = _masked_softmax_attend(q[:, :, rows], k, v, allowed, scale)
    if nb <= 2:
        return out[:, :, :n]

    layout = bigbird_layout(nb, num_random, seed)
    width = max(len(blocks) for blocks in layout)
    slots = torch.tensor([blocks + (blocks[0],) * (width - len(blocks)) for blocks in layout], device=q.device)
    slot_valid = torch.tensor([[s < len(blocks) for s in range(width)] for blocks in layout], device=q.device)
    key_positions = (slots[..., None] * block_size + torch.arange(block_size, device=q.device)).flatten(1)
    key_valid = slot_valid[..., None].expand(-1, -1, block_size).flatten(1)  # (nb - 2, S b)
    q_mid = q[:, :, block_size:-block_size].unflatten(2, (nb - 2, block_size))  # (B, H, nb - 2, b, D)
    k_mid, v_mid = k[:, :, key_positions], v[:, :, key_positions]  # (B, H, nb - 2, S b, .)
    query_positions = position[block_size:-block_size].view(nb - 2, block_size)
    is_self = query_positions[..., None] == key_positions[:, None, :]  # (nb - 2, b, S b)
    allowed = key_valid[:, None, :] & (real[:, key_positions][:, :, None, :] | is_self)  # padding slots never count
    out_mid = _masked_softmax_attend(q_mid, k_mid, v_mid, allowed[:, None], scale)
    out[:, :, block_size:-block_size] = out_mid.flatten(2, 3)
    return out[:, :, :n]


def reference_bigbird_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    block_size: int = 64,
    num_random: int = 3,
    seed: int = 0,
) -> torch.Tensor:
    """Dense softmax attention under the token mask expanded from :func:`bigbird_block_mask` (O(N^2))."""
    return torch.matmul(bigbird_attention_weights(q, k, key_padding_mask, block_size, num_random, seed), v)


def bigbird_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    block_size: int = 64,
    num_random: int = 3,
    seed: int = 0,
) -> torch.Tensor:
    """The dense ``[B, H, N, N]`` attention matrix of :func:`bigbird_attention`."""
    n = q.shape[-2]
    nb = -(-n // block_size)
    blocks = torch.arange(n, device=q.device) // block_size
    allowed = bigbird_block_mask(nb, num_random, seed, q.device)[blocks][:, blocks]  # (N, N)
    eye = torch.eye(n, dtype=torch.bool, device=q.device)
    if key_padding_mask is not None:
        allowed = (allowed & key_padding_mask[:, None, None, :]) | eye
    scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)
