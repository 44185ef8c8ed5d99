"""The fast Walsh-Hadamard transform, used by the structured random-feature matrices (SORF, ROM, FastFood).

The Sylvester-Hadamard matrix ``H_n`` (n a power of two) has ``+-1`` entries and ``H_n H_n^T = n I``. The fast
transform applies it in ``O(n log n)`` with ``log2(n)`` butterfly stages; it is plain PyTorch, so it runs on any
device and is differentiable. ``hadamard_matrix`` is the explicit reference it is tested against.

References: Le, Sarlos and Smola, 2013, "Fastfood: approximating kernel expansions in loglinear time";
Yu et al., 2016, "Orthogonal Random Features".
"""

from __future__ import annotations

import torch


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, ..."""
    return n >= 1 and (n & (n - 1)) == 0


def next_power_of_two(n: int) -> int:
    """The smallest power of two ``>= n`` (n >= 1)."""
    return 1 << (max(int(n), 1) - 1).bit_length()


def fast_walsh_hadamard(x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """Apply the Sylvester-Hadamard matrix along the last dimension: ``x H_n`` (``H_n`` is symmetric).

    Args:
        x (torch.Tensor): ``[..., n]`` with n a power of two.
        normalized (bool): scale by ``n^{-1/2}`` so the transform is orthonormal.

    Returns:
        torch.Tensor: ``[..., n]``, the same dtype and device.

    Raises:
        ValueError: if the last dimension is not a power of two.
    """
    n = x.shape[-1]
    if not is_power_of_two(n):
        raise ValueError(f"the Walsh-Hadamard transform needs a power-of-two last dimension, got {n}; zero-pad x first")
    lead = x.shape[:-1]
    out = x.reshape(-1, n)
    half = 1
    while half < n:
        pairs = out.view(-1, n // (2 * half), 2, half)  # butterflies of width 2 * half
        a, b = pairs[:, :, 0], pairs[:, :, 1]
        out = torch.stack((a + b, a - b), dim=2).view(-1, n)
        half *= 2
    out = out.view(*lead, n)
    return out * n**-0.5 if normalized else out


def hadamard_matrix(n: int, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> torch.Tensor:
    """The explicit ``n x n`` Sylvester-Hadamard matrix (``H_1 = [1]``, ``H_2n = [[H, H], [H, -H]]``); a reference."""
    if not is_power_of_two(n):
        raise ValueError(f"Sylvester-Hadamard matrices exist for powers of two, got n={n}")
    h = torch.ones(1, 1, dtype=dtype, device=device)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)], dim=0)
    return h
