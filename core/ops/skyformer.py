"""Skyformer: Nystrom approximation of Gaussian-kernel attention (Chen et al., NeurIPS 2021, "Skyformer:
Remodel Self-Attention with Gaussian Kernel and Nystrom Method").

The kernel block ``C = kappa(Q', K')`` is not PSD, so Skyformer lifts it into the PSD matrix
``B = kappa(X, X)`` of ``X = [Q'; K']`` (2N rows), approximates ``B ~ B S (S^T B S + gamma I)^{-1} S^T B`` with
``S`` selecting m landmark rows of ``X`` (half among the queries, half among the keys), and reads off the
off-diagonal block: ``C ~ kappa(Q', X_S) (kappa(X_S, X_S) + gamma I)^{-1} kappa(X_S, K')``. The output is
``C V`` computed right to left in O(N m d + m^3) time; the two N-sized factors are recomputed chunk by chunk
in the backward (:mod:`core.ops.kernel_product`), so the memory is O(N d + m^2).
"""

from __future__ import annotations

import torch

from core.ops.gaussian import feature_scale, gaussian_kernel
from core.ops.kernel_product import gaussian_kernel_product
from core.ops.pinv import regularized_kernel_inverse
from core.ops.sampling import gather_positions


def skyformer_landmarks(
    q: torch.Tensor, k: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor
) -> torch.Tensor:
    """Landmark rows ``X_S``: queries then keys at the given positions.

    Args:
        q (torch.Tensor): ``[B, H, N, D]``.
        k (torch.Tensor): ``[B, H, N, D]``.
        query_positions (torch.Tensor): int64 ``[B, m_q]``.
        key_positions (torch.Tensor): int64 ``[B, m_k]``.

    Returns:
        torch.Tensor: ``[B, H, m_q + m_k, D]`` (unscaled).
    """
    return torch.cat([gather_positions(q, query_positions), gather_positions(k, key_positions)], dim=2)


def skyformer_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    landmarks: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    ridge: float = 0.1,
    iterations: int = 6,
    inverse: str = "newton_schulz",
) -> torch.Tensor:
    """Nystrom approximation of ``kappa(Q', K') V`` on the lifted kernel matrix.

    Args:
        q (torch.Tensor): queries ``[B, H, N, D]``.
        k (torch.Tensor): keys ``[B, H, N, D]``.
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        landmarks (torch.Tensor): unscaled landmark rows ``[B, H, m, D]`` (see :func:`skyformer_landmarks`).
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token; padded keys get weight 0.
        scale (float, optional): feature scale, default ``D^{-1/4}``.
        ridge (float): ``gamma`` added to the landmark kernel matrix.
        iterations (int): Newton-Schulz iterations (``inverse="newton_schulz"``).
        inverse (str): ``"newton_schulz"`` (Skyformer) or ``"solve"`` (direct, exact).

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    scale = feature_scale(q.shape[-1], scale)
    # The m x m inverse runs in at least float32 (half precision would break the iteration).
    work = torch.promote_types(landmarks.dtype, torch.float32)
    landmark_kernel = gaussian_kernel(landmarks.to(work), landmarks.to(work), scale)  # [B, H, m, m]
    inverse_kernel = regularized_kernel_inverse(landmark_kernel, ridge, iterations, inverse).to(v.dtype)
    # Both N-sized products are recomputed chunk by chunk in the backward: no [N, m] kernel is stored.
    context = gaussian_kernel_product(landmarks, k, v, scale, key_padding_mask)  # kappa(S', K') V: [B, H, m, Dv]
    context = torch.matmul(inverse_kernel, context)
    return gaussian_kernel_product(q, landmarks, context, scale)  # kappa(Q', S') context: [B, H, N, Dv]


def skyformer_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    landmarks: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    ridge: float = 0.1,
    iterations: int = 6,
    inverse: str = "newton_schulz",
) -> torch.Tensor:
    """The explicit ``[B, H, N, N]`` matrix Skyformer applies to the values (zero at padded keys)."""
    scale = feature_scale(q.shape[-1], scale)
    inverse_kernel = regularized_kernel_inverse(gaussian_kernel(landmarks, landmarks, scale), ridge, iterations, inverse)
    weights = gaussian_kernel(q, landmarks, scale) @ inverse_kernel @ gaussian_kernel(k, landmarks, scale).transpose(-1, -2)
    if key_padding_mask is not None:
        weights = weights * key_padding_mask[:, None, None, :].to(weights.dtype)
    return weights


def reference_skyformer_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    ridge: float = 0.1,
) -> torch.Tensor:
    """A direct transcription of the paper: the lifted 2N x 2N matrix, a selection matrix, an exact inverse.

    ``B = kappa(X, X)``, ``X = [Q'; K']``; ``B~ = B S (S^T B S + gamma I)^{-1} S^T B`` with ``S`` the 0/1
    selection of rows ``query_positions`` and ``N + key_positions``; the output is ``B~[:N, N:] V`` with padded
    keys zeroed. O(N^2) memory: a test reference only.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    n = q.shape[-2]
    scale = feature_scale(q.shape[-1], scale)
    x = torch.cat([q, k], dim=2) * scale  # [B, H, 2N, D]
    lifted = torch.exp(-0.5 * torch.cdist(x, x).pow(2))  # [B, H, 2N, 2N]
    rows = torch.cat([query_positions, key_positions + n], dim=1)  # [B, m]
    selection = torch.nn.functional.one_hot(rows, 2 * n).to(x.dtype).transpose(1, 2)[:, None]  # [B, 1, 2N, m]
    core = selection.transpose(-1, -2) @ lifted @ selection
    core = core + ridge * torch.eye(core.shape[-1], dtype=x.dtype, device=x.device)
    approx = lifted @ selection @ torch.linalg.inv(core) @ selection.transpose(-1, -2) @ lifted
    block = approx[..., :n, n:]
    if key_padding_mask is not None:
        block = block * key_padding_mask[:, None, None, :].to(block.dtype)
    return block @ v
