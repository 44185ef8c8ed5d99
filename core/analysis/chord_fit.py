"""The non-parametric experiment of PSF-Attn as a tool (Khalitov et al., Neural Networks 2022, "Sparse
factorization of square matrices with application to neural attention modeling", Sec. 3 and Table 1).

A square matrix A (N x N) is approximated by a product of M = ceil(log2 N) chord-masked sparse factors, each
with self plus L = floor(log2 N) forward links per row, by minimising 1/2 ||A - W_1 ... W_M||_F^2 over the
nonzeros; it is compared with the truncated SVD of rank r = ceil(M^2 / 2), which has about as many parameters
(2 N r against M N (L + 1)). The paper's claim: sparse factors win when A is sparse and of high rank.

The paper's 45 matrices are not available; :func:`generated_matrices` generates a small suite in code.

    python -m core.analysis.chord_fit --n 64 --steps 300 --out runs/chord_fit
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from core.ops.chord import chord_factor_matrix, chord_indices


@dataclass
class ChordFitResult:
    """Errors of both approximations of one matrix (Frobenius norms; relative = divided by ``||A||_F``)."""

    n: int
    num_factors: int
    num_links: int
    chord_parameters: int
    svd_rank: int
    svd_parameters: int
    chord_error: float
    svd_error: float
    chord_relative_error: float
    svd_relative_error: float
    history: list[float] = field(default_factory=list)


def chord_shape(n: int) -> tuple[int, int]:
    """``(M, K)``: ``ceil(log2 N)`` factors with ``floor(log2 N) + 1`` links per row, as in the paper."""
    if n < 2:
        raise ValueError(f"the matrix must be at least 2 x 2, got N = {n}")
    return math.ceil(math.log2(n)), int(math.floor(math.log2(n))) + 1


def chord_product_dense(values: torch.Tensor) -> torch.Tensor:
    """``W_1 W_2 ... W_M`` from the nonzeros ``values: [M, N, K]`` (row i, link k at column ``i + 2^(k-1)``)."""
    m, n, k = values.shape
    index, _ = chord_indices(k, n, device=values.device)
    product = torch.eye(n, dtype=values.dtype, device=values.device)
    for factor in values:
        product = product @ chord_factor_matrix(factor[None, None], index)[0, 0]
    return product


def initial_factors(n: int, seed: int = 1, dtype=torch.float64) -> torch.Tensor:
    """The paper's start: each factor is the row-normalised mask plus row-normalised uniform noise times 1e-2."""
    m, k = chord_shape(n)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(m, n, k, generator=generator, dtype=dtype)
    return 1.0 / k + 1e-2 * noise / noise.sum(dim=-1, keepdim=True)


def truncated_svd_error(a: torch.Tensor, rank: int) -> float:
    """``||A - A_r||_F`` for the best rank-r approximation (the norm of the discarded singular values)."""
    singular = torch.linalg.svdvals(a)
    return float(singular[rank:].pow(2).sum().sqrt())


def fit_chord_factors(
    a: torch.Tensor, steps: int = 300, optimizer: str = "lbfgs", lr: float = 1.0, seed: int = 1, progress: bool = False
) -> tuple[torch.Tensor, list[float]]:
    """Fit the nonzeros of ``ceil(log2 N)`` chord factors to ``a`` by gradient-based minimisation.

    Args:
        a (torch.Tensor): the square target ``[N, N]``.
        steps (int): optimiser steps (each up to 10 L-BFGS iterations, or one Adam update).
        optimizer (str): ``"lbfgs"`` (quasi-Newton, as the paper's ``fminunc``) or ``"adam"``.
        lr (float): learning rate (L-BFGS step scale or Adam's rate).
        seed (int): seed of the initial noise.
        progress (bool): show a tqdm bar.

    Returns:
        The nonzeros ``[M, N, K]`` and the objective ``1/2 ||A - W_1 ... W_M||_F^2`` after every step.
    """
    if a.dim() != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"expected a square matrix [N, N], got shape {tuple(a.shape)}")
    a = a.to(torch.float64)
    values = initial_factors(a.shape[0], seed).requires_grad_(True)

    def objective() -> torch.Tensor:
        return 0.5 * (a - chord_product_dense(values)).pow(2).sum()

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(
            [values], lr=lr, max_iter=10, history_size=50, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
            tolerance_change=1e-15,
        )
    elif optimizer == "adam":
        opt = torch.optim.Adam([values], lr=lr)
    else:
        raise ValueError(f"optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    history = []
    for _ in tqdm(range(steps), desc="chord fit", disable=not progress, file=sys.stderr):
        opt.step(closure)
        with torch.no_grad():
            history.append(float(objective()))
    return values.detach(), history


def compare_with_svd(
    a: torch.Tensor, steps: int = 300, optimizer: str = "lbfgs", lr: float = 1.0, seed: int = 1
) -> ChordFitResult:
    """Fit chord factors to ``a`` and compare with the truncated SVD of rank ``ceil(M^2 / 2)``."""
    n = a.shape[0]
    m, k = chord_shape(n)
    values, history = fit_chord_factors(a, steps, optimizer, lr, seed)
    a = a.to(torch.float64)
    norm = float(a.norm())
    chord_error = float((a - chord_product_dense(values)).norm())
    rank = min(math.ceil(m * m / 2), n)
    svd_error = truncated_svd_error(a, rank)
    return ChordFitResult(
        n=n,
        num_factors=m,
        num_links=k,
        chord_parameters=m * n * k,
        svd_rank=rank,
        svd_parameters=2 * n * rank,
        chord_error=chord_error,
        svd_error=svd_error,
        chord_relative_error=chord_error / norm,
        svd_relative_error=svd_error / norm,
        history=history,
    )


def generated_matrices(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A small suite of ``[N, N]`` float64 targets covering the paper's categories.

    - ``cyclic_shift``: a permutation (sparse, full rank, flat spectrum); exactly a chord product.
    - ``sparse_random``: about 2 log2 N random nonzeros per row (sparse, high rank), like a network.
    - ``banded``: a random band of width 5 (a mesh-like operator).
    - ``low_rank``: a random rank-4 matrix.
    - ``gaussian_kernel``: an RBF kernel on random points (a covariance, fast spectral decay).
    - ``image``: a synthetic greyscale image (gradient, a disk, a bar), smooth with sharp edges.
    """
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(n)
    shift = torch.zeros(n, n, dtype=torch.float64)
    shift[rows, (rows + (2 * n) // 3) % n] = 1.0
    density = min(1.0, 2 * math.log2(n) / n)
    sparse = torch.randn(n, n, generator=g, dtype=torch.float64) * (torch.rand(n, n, generator=g) < density)
    band = torch.randn(n, n, generator=g, dtype=torch.float64) * ((rows[:, None] - rows[None, :]).abs() <= 2)
    low_rank = torch.randn(n, 4, generator=g, dtype=torch.float64) @ torch.randn(4, n, generator=g, dtype=torch.float64)
    points = torch.randn(n, 3, generator=g, dtype=torch.float64)
    kernel = torch.exp(-0.5 * torch.cdist(points, points).pow(2))
    axis = torch.linspace(-1, 1, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    image = 0.3 * (xx + 1) + ((xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.2).double() + 0.5 * ((yy - 0.6).abs() < 0.05).double()
    return {
        "cyclic_shift": shift,
        "sparse_random": sparse,
        "banded": band,
        "low_rank": low_rank,
        "gaussian_kernel": kernel,
        "image": image,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m core.analysis.chord_fit",
        description="Fit chord-masked sparse factors to the generated test matrices and compare with truncated SVD.",
    )
    parser.add_argument("--n", type=int, default=64, help="matrix size N (default 64)")
    parser.add_argument("--steps", type=int, default=300,
                        help="optimiser steps per matrix, each up to 10 L-BFGS iterations or one Adam update (default 300)")
    parser.add_argument("--optimizer", default="lbfgs", choices=["lbfgs", "adam"], help="optimiser (default lbfgs)")
    parser.add_argument("--lr", type=float, default=1.0, help="learning rate / L-BFGS step scale (default 1.0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated matrices (default 0)")
    parser.add_argument("--out", default=None, help="folder for chord_fit.json (default: print only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = {}
    matrices = generated_matrices(args.n, args.seed)
    for name, matrix in tqdm(matrices.items(), desc="matrices", file=sys.stderr):
        results[name] = compare_with_svd(matrix, args.steps, args.optimizer, args.lr)
    first = next(iter(results.values()))
    print(
        f"N = {args.n}: {first.num_factors} chord factors x {first.num_links} links ({first.chord_parameters} parameters)"
        f" vs truncated SVD of rank {first.svd_rank} ({first.svd_parameters} parameters)"
    )
    print(f"{'matrix':<16} {'chord rel. error':>17} {'SVD rel. error':>15}  winner")
    for name, result in results.items():
        winner = "chord" if result.chord_error < result.svd_error else "SVD"
        print(f"{name:<16} {result.chord_relative_error:>17.4g} {result.svd_relative_error:>15.4g}  {winner}")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        payload = {"args": vars(args), "results": {name: asdict(r) for name, r in results.items()}}
        (out / "chord_fit.json").write_text(json.dumps(payload, indent=2))
        print(f"wrote {out / 'chord_fit.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
