"""The fast Walsh-Hadamard transform, used by the structured random-feature matrices (SORF, ROM, FastFood).

The Sylvester-Hadamard matrix ``H_n`` (n a power of two) has ``+-1`` entries and ``H_n H_n^T = n I``. The fast
transform applies it in ``O(n log n)`` as a product of small Kronecker factors; it is plain PyTorch, so it runs on
any device and is differentiable. ``hadamard_matrix`` is the explicit reference it is tested against.

References: Le, Sarlos and Smola, 2013, "Fastfood: approximating kernel expansions in loglinear time";
Yu et al., 2016, "Orthogonal Random Features".
"""

from __future__ import annotations

import functools

import torch


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, ..."""
    return n >= 1 and (n & (n - 1)) == 0


def next_power_of_two(n: int) -> int:
    """The smallest power of two ``>= n`` (n >= 1)."""
    return 1 << (max(int(n), 1) - 1).bit_length()


def fast_walsh_hadamard(x: torch.Tensor, normalized: bool = False, radix: int = 16) -> torch.Tensor:
    """Apply the Sylvester-Hadamard matrix along the last dimension: ``x H_n`` (``H_n`` is symmetric).

    ``H_n[i, j] = (-1)^{popcount(i & j)}`` factorises over any grouping of the index bits, so
    ``H_n = H_r1 (x) H_r2 (x) ...`` (Kronecker, factors <= ``radix``): the transform is ``log_radix(n)`` small
    matmuls on a reshaped view, ``O(n radix log_radix n)`` work and few kernel launches (radix 2 is the classic
    butterfly).

    Args:
        x (torch.Tensor): ``[..., n]`` with n a power of two.
        normalized (bool): scale by ``n^{-1/2}`` so the transform is orthonormal.
        radix (int): largest factor, a power of two >= 2. Default: 16.

    Returns:
        torch.Tensor: ``[..., n]``, the same dtype and device.

    Raises:
        ValueError: if the last dimension is not a power of two.
    """
    n = x.shape[-1]
    if not is_power_of_two(n):
        raise ValueError(f"the Walsh-Hadamard transform needs a power-of-two last dimension, got {n}; zero-pad x first")
    if radix < 2 or not is_power_of_two(radix):
        raise ValueError(f"radix must be a power of two >= 2, got {radix}")
    lead = x.shape[:-1]
    bits, step = n.bit_length() - 1, radix.bit_length() - 1
    factors = [1 << min(step, bits - done) for done in range(0, bits, step)]  # high bits first
    out = x.reshape(-1, *factors)
    for axis, size in enumerate(factors, start=1):
        h = _cached_hadamard(size, x.dtype, x.device)
        out = torch.matmul(out.movedim(axis, -1), h).movedim(-1, axis)
    out = out.reshape(*lead, n)
    return out * n**-0.5 if normalized else out


@functools.lru_cache(maxsize=64)
def _cached_hadamard(n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return hadamard_matrix(n, dtype, device)


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> torch.Tensor:
    """The explicit ``n x n`` Sylvester-Hadamard matrix (``H_1 = [1]``, ``H_2n = [[H, H], [H, -H]]``); a reference."""
    if not is_power_of_two(n):
        raise ValueError(f"Sylvester-Hadamard matrices exist for powers of two, got n={n}")
    h = torch.ones(1, 1, dtype=dtype, device=device)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)], dim=0)
    return h
