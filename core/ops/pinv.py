"""Iterative Moore-Penrose pseudo-inverse for the small landmark matrices of Nystrom-type attention.

The iteration is the one Nystromformer (Xiong et al., AAAI 2021) takes from Razavi et al. (2014),
``Z <- Z (13 I - A Z (15 I - A Z (7 I - A Z))) / 4``; it uses matrix products only (fast on GPUs, and
differentiable). It converges to ``pinv(A)`` when the initial iterate satisfies ``||I - A Z_0|| < 1`` on the
range of ``A``; ``Z_0 = A^T / (||A||_1 ||A||_inf)`` guarantees it because ``||A||_2^2 <= ||A||_1 ||A||_inf``.

Upstream code scales ``Z_0`` by one maximum over the whole batch of matrices, so a large matrix in the batch
slows the convergence of every other one (and makes a sample's output depend on its batch-mates); here each
matrix is scaled by its own norms.

Skyformer (Chen et al., NeurIPS 2021) regularises and normalises its symmetric kernel matrix before the
iteration: ``M' = D^{-1/2} (M + gamma I) D^{-1/2}`` with ``D = diag((M + gamma I) 1)`` has its spectrum in
(0, 1], and ``(M + gamma I)^{-1} = D^{-1/2} M'^{-1} D^{-1/2}`` (:func:`regularized_kernel_inverse`).
"""

from __future__ import annotations

import torch


def initial_iterate(a: torch.Tensor) -> torch.Tensor:
    """Per-matrix scaled transpose ``A^T / (||A||_1 ||A||_inf)``.

    Args:
        a (torch.Tensor): matrices of shape ``[..., m, n]``.

    Returns:
        torch.Tensor: ``[..., n, m]``.
    """
    absolute = a.abs()
    max_column_sum = absolute.sum(dim=-2).amax(dim=-1)  # ||A||_1, shape [...]
    max_row_sum = absolute.sum(dim=-1).amax(dim=-1)  # ||A||_inf
    bound = (max_column_sum * max_row_sum).clamp_min(torch.finfo(a.dtype).tiny)
    return a.transpose(-1, -2) / bound[..., None, None]


def newton_schulz_pinv(a: torch.Tensor, iterations: int = 6) -> torch.Tensor:
    """Pseudo-inverse by the fourth-order hyper-power iteration of Razavi et al. (as in Nystromformer).

    Args:
        a (torch.Tensor): matrices of shape ``[..., m, n]`` (typically square landmark matrices).
        iterations (int): number of iterations; 6 in Nystromformer and Skyformer. Ill-conditioned matrices
            need more (the smallest singular value grows by about 13/4 per iteration before converging).

    Returns:
        torch.Tensor: ``[..., n, m]``, an approximation of ``torch.linalg.pinv(a)``.
    """
    if iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {iterations}")
    z = initial_iterate(a)
    batch_shape, (m, n) = a.shape[:-2], a.shape[-2:]
    a3 = a.reshape(-1, m, n)  # baddbmm fuses each "c I - A Z (...)" into one op
    z = z.reshape(-1, n, m)
    eye = torch.eye(m, dtype=a.dtype, device=a.device)
    seven, fifteen, thirteen_quarters = 7 * eye, 15 * eye, 3.25 * eye
    for _ in range(iterations):
        az = torch.bmm(a3, z)  # [batch, m, m]
        inner = seven - az
        inner = torch.baddbmm(fifteen, az, inner, alpha=-1)
        inner = torch.baddbmm(thirteen_quarters, az, inner, alpha=-0.25)  # (13 I - AZ (...)) / 4
        z = torch.bmm(z, inner)
    return z.reshape(*batch_shape, n, m)


def regularized_kernel_inverse(
    kernel: torch.Tensor, ridge: float = 0.1, iterations: int = 6, method: str = "newton_schulz"
) -> torch.Tensor:
    """``(M + gamma I)^{-1}`` of a symmetric positive (semi-)definite kernel matrix with positive entries.

    Args:
        kernel (torch.Tensor): ``M`` of shape ``[..., m, m]`` (e.g. a Gaussian kernel among landmarks).
        ridge (float): ``gamma`` >= 0; Skyformer uses 0.1.
        iterations (int): Newton-Schulz iterations for ``method="newton_schulz"``.
        method (str): ``"newton_schulz"`` (Skyformer: degree normalisation, then the iteration) or
            ``"solve"`` (a direct solve; needs ``M + gamma I`` to be invertible).

    Returns:
        torch.Tensor: ``[..., m, m]``.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    eye = torch.eye(kernel.shape[-1], dtype=kernel.dtype, device=kernel.device)
    regularized = kernel + ridge * eye
    if method == "solve":
        return torch.linalg.solve(regularized, eye.expand_as(regularized))
    if method != "newton_schulz":
        raise ValueError(f"method must be 'newton_schulz' or 'solve', got {method!r}")
    inv_sqrt_degree = regularized.sum(dim=-1).clamp_min(torch.finfo(kernel.dtype).tiny).rsqrt()  # [..., m]
    normalized = regularized * inv_sqrt_degree[..., :, None] * inv_sqrt_degree[..., None, :]
    z = newton_schulz_pinv(normalized, iterations)
    return z * inv_sqrt_degree[..., :, None] * inv_sqrt_degree[..., None, :]


def reference_pinv(a: torch.Tensor) -> torch.Tensor:
    """The exact pseudo-inverse (SVD), the reference for :func:`newton_schulz_pinv`."""
    return torch.linalg.pinv(a)
