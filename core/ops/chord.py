"""Chord-masked sparse factors and their product with gathers (Khalitov et al., Neural Networks 2022,
"Sparse factorization of square matrices with application to neural attention modeling", PSF-Attn).

A chord factor W (N x N) has K = L + 1 nonzeros per row i, at columns {i} and {(i + 2^k) mod N : k < L}
(circular, looking ahead). Its product with values is a weighted gather,

    (W V)_i = sum_k W[i, k] V[idx[i, k]],   idx[i, k] = (i + offset_k) mod N,  offset = (0, 1, 2, 4, ...),

so a product of M factors costs O(M K N C) and needs no sparse library. Two extensions of ours:

- causal: links look back, idx[i, k] = i - offset_k, and a link before position 0 does not exist;
- padding: links are defined over the real tokens in order (a real token of rank r links to the real
  token of rank r + offset_k modulo the number of real tokens), so padding changes nothing for real tokens
  and a padded sequence gives exactly the output of the same sequence without its pads.

An offset that is a multiple of N gives a second self link, summed as upstream's ``spmm`` does.
"""

from __future__ import annotations

import torch


def chord_offsets(num_links: int) -> list[int]:
    """Offsets ``[0, 1, 2, 4, ..., 2^(num_links - 2)]``: self plus ``num_links - 1`` powers of two."""
    if num_links < 1:
        raise ValueError(f"num_links must be >= 1 (self plus powers of two), got {num_links}")
    return [0] + [2**k for k in range(num_links - 1)]


def chord_indices(
    num_links: int,
    length: int,
    key_padding_mask: torch.Tensor | None = None,
    causal: bool = False,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Column indices of the chord links and which links exist.

    Args:
        num_links (int): K, links per row (self included).
        length (int): N.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``; links then run over each sequence's real
            tokens in order, and padded rows have no links.
        causal (bool): links look back (``i - offset``) and stop at the first token.
        device: device of the result.

    Returns:
        ``(index, valid)``: ``index`` is long ``[1 or B, N, K]``; ``valid`` is bool of the same shape, or None
        when every link exists. A missing link points at its own row and must carry zero weight.
    """
    offsets = torch.tensor(chord_offsets(num_links), device=device)
    if key_padding_mask is None:
        rows = torch.arange(length, device=device)[:, None]
        if causal:
            target = rows - offsets
            valid = target >= 0
            return torch.where(valid, target, rows)[None], valid[None]
        return ((rows + offsets) % length)[None], None
    mask = key_padding_mask.to(device)
    real = mask.sum(dim=1, keepdim=True)  # (B, 1)
    rank = torch.cumsum(mask.long(), dim=1) - 1  # rank of each real token among the real ones
    # positions of the real tokens in order, then the pads: position_of_rank[b, r] for r < real[b]
    position_of_rank = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    rank = rank[..., None]  # (B, N, 1)
    if causal:
        target = rank - offsets
        valid = (target >= 0) & mask[..., None]
    else:
        target = (rank + offsets) % real.clamp(min=1)[..., None]
        valid = mask[..., None].expand(-1, -1, num_links)
    target = torch.where(valid, target, torch.zeros_like(target))
    index = torch.gather(position_of_rank, 1, target.flatten(1)).view_as(target)
    rows = torch.arange(length, device=mask.device)[None, :, None]
    return torch.where(valid, index, rows), valid


def _gather_rows(v: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``v[b, h, index[b, i], :]`` for ``v: [B, H, N, C]`` and ``index: [1 or B, N]``."""
    if index.shape[0] == 1:
        return v.index_select(2, index[0])
    b, h, n, c = v.shape
    return torch.gather(v, 2, index[:, None, :, None].expand(b, h, n, c))


def _scatter_rows(target: torch.Tensor, index: torch.Tensor, source: torch.Tensor) -> None:
    """In place ``target[b, h, index[b, i], :] += source[b, h, i, :]`` (the adjoint of :func:`_gather_rows`)."""
    if index.shape[0] == 1:
        target.index_add_(2, index[0], source)
        return
    b, h, n, c = target.shape
    target.scatter_add_(2, index[:, None, :, None].expand(b, h, n, c), source)


class _ChordMix(torch.autograd.Function):
    """``out_i = sum_k w[i, k] v[idx[i, k]]``; the backward pass re-gathers instead of storing K copies of v."""

    @staticmethod
    def forward(ctx, weights, v, index):
        out = torch.zeros_like(v)
        for link in range(index.shape[-1]):
            out.addcmul_(weights[..., link, None], _gather_rows(v, index[..., link]))
        ctx.save_for_backward(weights, v, index)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        weights, v, index = ctx.saved_tensors
        grad_weights = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_weights = torch.stack(
                [(grad_out * _gather_rows(v, index[..., link])).sum(dim=-1) for link in range(index.shape[-1])],
                dim=-1,
            )
        if ctx.needs_input_grad[1]:
            grad_v = torch.zeros_like(v)
            for link in range(index.shape[-1]):
                _scatter_rows(grad_v, index[..., link], grad_out * weights[..., link, None])
        return grad_weights, grad_v, None


def chord_mix(weights: torch.Tensor, v: torch.Tensor, index: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """One sparse factor times the values, ``W V``, with gathers.

    Args:
        weights (torch.Tensor): the nonzeros of W, ``[B, H, N, K]`` (row i, link k).
        v (torch.Tensor): values ``[B, H, N, C]``.
        index (torch.Tensor): long ``[1 or B, N, K]`` from :func:`chord_indices`.
        valid (torch.Tensor, optional): bool ``[1 or B, N, K]``; missing links get zero weight.

    Returns:
        torch.Tensor: ``[B, H, N, C]``.
    """
    if valid is not None:
        weights = weights * valid[:, None].to(weights.dtype)
    return _ChordMix.apply(weights.to(v.dtype), v, index)


def chord_product(
    factors: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    valid: torch.Tensor | None = None,
    residual: bool = True,
) -> torch.Tensor:
    """``V <- W^(m) V (+ V_0)`` for m = 1..M: the PSF-Attn product, residual to the initial values.

    Args:
        factors (torch.Tensor): nonzeros of the M factors, ``[M, B, H, N, K]``, applied first to last.
        v (torch.Tensor): initial values V_0 ``[B, H, N, C]``.
        index, valid: the chord pattern from :func:`chord_indices`.
        residual (bool): add V_0 after every factor, as PSF-Attn does.

    Returns:
        torch.Tensor: ``[B, H, N, C]``.
    """
    out = v
    for weights in factors:
        out = chord_mix(weights, out, index, valid)
        if residual:
            out = out + v
    return out


def chord_factor_matrix(weights: torch.Tensor, index: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """The explicit ``[B, H, N, N]`` factor with ``W[i, index[i, k]] += weights[i, k]`` (duplicates summed)."""
    b, h, n, k = weights.shape
    if valid is not None:
        weights = weights * valid[:, None].to(weights.dtype)
    columns = index[:, None].expand(b, h, n, k)
    return torch.zeros(b, h, n, n, dtype=weights.dtype, device=weights.device).scatter_add_(-1, columns, weights)


def chord_product_matrix(
    factors: torch.Tensor, index: torch.Tensor, valid: torch.Tensor | None = None, residual: bool = True
) -> torch.Tensor:
    """The dense ``[B, H, N, N]`` matrix A with ``chord_product(...) = A V_0``: ``P_m = W^(m) P_{m-1} (+ I)``."""
    _, b, h, n, _ = factors.shape
    eye = torch.eye(n, dtype=factors.dtype, device=factors.device)
    product = eye.expand(b, h, n, n)
    for weights in factors:
        product = torch.matmul(chord_factor_matrix(weights, index, valid), product)
        if residual:
            product = product + eye
    return product


def reference_chord_product(
    factors: torch.Tensor,
    v: torch.Tensor,
    index: torch.Tensor,
    valid: torch.Tensor | None = None,
    residual: bool = True,
) -> torch.Tensor:
    """Dense reference of :func:`chord_product`: explicit factor matrices multiplied one after another."""
    out = v
    for weights in factors:
        out = torch.matmul(chord_factor_matrix(weights, index, valid), out)
        if residual:
            out = out + v
    return out
