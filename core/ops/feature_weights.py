"""Weight matrices W = [omega_1 .. omega_m]^T for random features: each row is (close to) a draw of N(0, I_d).

Every sampler returns an ``(m, d)`` float64 CPU tensor drawn from a ``torch.Generator`` (None = the global RNG);
callers move it to their device. The matrices are those of the Spectraformer framework (Nguyen et al., 2025,
"Spectraformer: A Unified Random Feature Framework for Transformer"), built as their source papers define them:

- ``gaussian``: iid N(0, 1) entries (Rahimi and Recht, 2007).
- ``orf``: blocks of d orthonormal rows with chi_d row norms (Yu et al., 2016; Performer, Choromanski et al., 2021).
  Each row is exactly N(0, I_d) and rows within a block are orthogonal.
- ``scrf``: signed circulant blocks (Feng et al., 2015): rows are cyclic shifts of one Gaussian vector with random
  signs, so each row is exactly N(0, I_d).
- ``sorf``: ``sqrt(n) H D1 H D2 H D3`` with the orthonormal Hadamard ``H / sqrt(n)`` (Yu et al., 2016); n is the
  next power of two and the first d columns are kept. Rows then get chi_d norms (directions kept), since a fixed
  norm biases positive features.
- ``rom``: the S-Hybrid random orthogonal matrix ``sqrt(n) H Du H D2 H D1`` with unit-modulus complex ``Du``
  (Choromanski et al., 2017); its real part (rows with unit-variance entries), rows with chi_d norms.
- ``sgq``: each entry drawn from the n-point probabilists' Gauss-Hermite rule used as a discrete distribution
  (nodes and weights of :func:`numpy.polynomial.hermite_e.hermegauss`); it matches the moments of N(0, 1) up to
  order 2n - 1, so the estimators built on it are nearly unbiased.
- ``qmc``: a scrambled Sobol (or Halton) sequence of m points in [0, 1)^d mapped through the normal inverse CDF
  (randomised quasi-Monte Carlo; every point is marginally N(0, I_d)).
- ``mm``: moment matching: Gaussian rows shifted and whitened so that the empirical mean is exactly 0 and the
  empirical second moment exactly I (when m > d).
- FastFood (Le, Sarlos and Smola, 2013): ``V = n^{-1/2} S H G Pi H B`` per block of n rows, applied with the fast
  Walsh-Hadamard transform; see :func:`draw_fastfood` and :func:`fastfood_transform`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from core.ops.hadamard import fast_walsh_hadamard, next_power_of_two

DTYPE = torch.float64


def _check_sizes(m: int, d: int) -> None:
    if not isinstance(m, int) or not isinstance(d, int) or m < 1 or d < 1:
        raise ValueError(f"need positive integers num_features m and dim d, got m={m!r}, d={d!r}")


def _chi(count: int, d: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` draws of the chi distribution with d degrees of freedom (norms of N(0, I_d) vectors)."""
    return torch.randn(count, d, generator=generator, dtype=DTYPE).norm(dim=1)


def _rademacher(*shape: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randint(0, 2, shape, generator=generator).to(DTYPE) * 2 - 1


def _with_chi_norms(rows: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Keep each row's direction, give it an independent chi_d norm (the norm law of an N(0, I_d) row).

    Structured products have (near) constant row norms; positive features depend on ``||omega||``, and a fixed norm
    biases them, so SORF and ROM rows get Gaussian norms as ORF does.
    """
    return rows / rows.norm(dim=1, keepdim=True) * _chi(rows.shape[0], rows.shape[1], generator)[:, None]


def _left_hadamard(x: torch.Tensor) -> torch.Tensor:
    """``H x`` for a matrix ``x [n, k]`` (H is symmetric, the transform acts on the last dim)."""
    return fast_walsh_hadamard(x.transpose(0, 1)).transpose(0, 1)


def gaussian_weights(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """iid N(0, 1) entries: the Monte-Carlo baseline. Returns ``[m, d]``."""
    _check_sizes(m, d)
    return torch.randn(m, d, generator=generator, dtype=DTYPE)


def orthogonal_weights(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Orthogonal random features: ceil(m / d) Haar-orthogonal ``d x d`` blocks, rows rescaled by chi_d norms.

    Returns:
        torch.Tensor: ``[m, d]``; rows of one block are orthogonal, each row is marginally N(0, I_d).
    """
    _check_sizes(m, d)
    q, r = torch.linalg.qr(torch.randn(math.ceil(m / d), d, d, generator=generator, dtype=DTYPE))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]  # sign fix: Haar-distributed
    rows = q.transpose(-1, -2).reshape(-1, d)[:m]
    return rows * _chi(m, d, generator)[:, None]


def signed_circulant_weights(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Signed circulant random features: per block of d rows, ``diag(s) circ(w)``, w ~ N(0, I_d), s = +-1.

    Returns:
        torch.Tensor: ``[m, d]``, each row a signed cyclic shift of its block's Gaussian vector.
    """
    _check_sizes(m, d)
    shift = (torch.arange(d)[None, :] - torch.arange(d)[:, None]) % d  # circ[i, j] = w[(j - i) mod d]
    blocks = []
    for _ in range(math.ceil(m / d)):
        w = torch.randn(d, generator=generator, dtype=DTYPE)
        signs = _rademacher(d, generator=generator)
        blocks.append(signs[:, None] * w[shift])
    return torch.cat(blocks, dim=0)[:m]


def _hd_chain(diagonals: list[torch.Tensor]) -> torch.Tensor:
    """``H D_k ... H D_1`` (unnormalised H) for diagonals ``[n]`` given in application order D_1 first."""
    out = torch.diag(diagonals[0])
    out = _left_hadamard(out)
    for diagonal in diagonals[1:]:
        out = _left_hadamard(diagonal[:, None] * out)
    return out


def structured_orthogonal_weights(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """SORF: blocks ``sqrt(n) (H/sqrt(n)) D1 (H/sqrt(n)) D2 (H/sqrt(n)) D3``, first d columns, first m rows.

    With the Hadamard matrix normalised, each ``n x n`` block is orthogonal with row norms sqrt(n), so the kept
    rows have entries of unit variance (squared row norm d on average; exactly d and orthogonal when d = n).

    Returns:
        torch.Tensor: ``[m, d]``.
    """
    _check_sizes(m, d)
    n = next_power_of_two(d)
    blocks = []
    while len(blocks) < math.ceil(m / n):
        diagonals = [_rademacher(n, generator=generator) for _ in range(3)]
        block = _hd_chain(diagonals) / n  # sqrt(n) * n^{-3/2}
        if (block[:, :d].abs().sum(dim=1) > 0).all():  # for d < n a kept row can vanish; draw the block again
            blocks.append(block)
    return _with_chi_norms(torch.cat(blocks, dim=0)[:m, :d], generator)


def random_ortho_hybrid_weights(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """ROM, S-Hybrid form: ``sqrt(2) Re(sqrt(n) H Du H D2 H D1 / n^{3/2})`` with ``Du = diag(exp(i theta))``.

    The complex block is unitary times sqrt(n); its real part has entries of variance 1/2, hence the sqrt(2).

    Returns:
        torch.Tensor: ``[m, d]`` real.
    """
    _check_sizes(m, d)
    n = next_power_of_two(d)
    blocks = []
    for _ in range(math.ceil(m / n)):
        d1, d2 = (_rademacher(n, generator=generator) for _ in range(2))
        theta = torch.rand(n, generator=generator, dtype=DTYPE) * (2 * math.pi)
        unit = torch.polar(torch.ones_like(theta), theta)
        inner = _hd_chain([d1, d2]).to(torch.complex128)
        block = _left_hadamard(unit[:, None] * inner) / n
        blocks.append(math.sqrt(2.0) * block.real)
    return _with_chi_norms(torch.cat(blocks, dim=0)[:m, :d], generator)


def gauss_hermite_rule(points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nodes and probabilities of the ``points``-point Gauss-Hermite rule for N(0, 1) (probabilists' form).

    Returns:
        ``(nodes [points], probabilities [points])``; the probabilities sum to one.
    """
    if points < 1:
        raise ValueError(f"a quadrature rule needs at least one point, got {points}")
    nodes, weights = np.polynomial.hermite_e.hermegauss(points)
    weights = weights / weights.sum()
    return torch.from_numpy(nodes).to(DTYPE), torch.from_numpy(weights).to(DTYPE)


def quadrature_weights(
    m: int, d: int, generator: torch.Generator | None = None, quadrature_points: int = 5
) -> torch.Tensor:
    """SGQ: entries iid from the Gauss-Hermite rule as a discrete distribution (moments match N(0,1) to 2n-1).

    Returns:
        torch.Tensor: ``[m, d]`` with entries among the rule's nodes.
    """
    _check_sizes(m, d)
    if quadrature_points < 2:
        raise ValueError(f"quadrature_points must be >= 2 (one point has zero variance), got {quadrature_points}")
    nodes, probabilities = gauss_hermite_rule(quadrature_points)
    index = torch.multinomial(probabilities, m * d, replacement=True, generator=generator)
    return nodes[index].view(m, d)


def qmc_weights(
    m: int, d: int, generator: torch.Generator | None = None, sequence: str = "sobol"
) -> torch.Tensor:
    """Randomised QMC: m scrambled Sobol or Halton points in [0, 1)^d through the normal inverse CDF.

    Returns:
        torch.Tensor: ``[m, d]``; every row is marginally N(0, I_d), rows are more evenly spread than iid.
    """
    from scipy.special import ndtri
    from scipy.stats import qmc

    _check_sizes(m, d)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    if sequence == "sobol":
        engine = qmc.Sobol(d=d, scramble=True, seed=seed)
    elif sequence == "halton":
        engine = qmc.Halton(d=d, scramble=True, seed=seed)
    else:
        raise ValueError(f"qmc sequence must be 'sobol' or 'halton', got {sequence!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sobol warns when m is not a power of two; balance is then approximate
        points = engine.random(m)
    tiny = np.finfo(np.float64).eps
    return torch.from_numpy(ndtri(np.clip(points, tiny, 1 - tiny))).to(DTYPE)


def moment_matched_weights(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Moment matching: Gaussian rows with empirical mean exactly 0 and empirical second moment exactly I.

    When ``m <= d`` a full-rank identity second moment is impossible; the columns are then centred (m >= 2) and
    scaled to unit empirical second moment.

    Returns:
        torch.Tensor: ``[m, d]``.
    """
    _check_sizes(m, d)
    g = torch.randn(m, d, generator=generator, dtype=DTYPE)
    if m >= 2:
        g = g - g.mean(dim=0, keepdim=True)
    if m > d:
        second = g.transpose(0, 1) @ g / m  # (d, d)
        chol = torch.linalg.cholesky(second)
        return torch.linalg.solve_triangular(chol, g.transpose(0, 1), upper=False).transpose(0, 1)
    return g / g.pow(2).mean(dim=0, keepdim=True).sqrt().clamp_min(1e-12)


WEIGHT_SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "gaussian": gaussian_weights,
    "orf": orthogonal_weights,
    "scrf": signed_circulant_weights,
    "sorf": structured_orthogonal_weights,
    "rom": random_ortho_hybrid_weights,
    "sgq": quadrature_weights,
    "qmc": qmc_weights,
    "mm": moment_matched_weights,
}
FASTFOOD = ("fastfood_fixed", "fastfood_learnable")
WEIGHT_NAMES = tuple(WEIGHT_SAMPLERS) + FASTFOOD


def draw_fastfood(m: int, d: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Draw the diagonals and permutations of ceil(m / n) FastFood blocks, n = next power of two >= d.

    Returns:
        dict with ``sign [k, n]`` (B, Rademacher), ``gauss [k, n]`` (G), ``scale [k, n]`` (S = chi_n / ||G||_F)
        and ``perm [k, n]`` (Pi, int64), k = ceil(m / n). Rows of ``n^{-1/2} S H G Pi H B`` then have chi_n norms.
    """
    _check_sizes(m, d)
    n = next_power_of_two(d)
    k = math.ceil(m / n)
    gauss = torch.randn(k, n, generator=generator, dtype=DTYPE)
    scale = _chi(k * n, n, generator).view(k, n) / gauss.norm(dim=1, keepdim=True)
    perm = torch.stack([torch.randperm(n, generator=generator) for _ in range(k)])
    return {"sign": _rademacher(k, n, generator=generator), "gauss": gauss, "scale": scale, "perm": perm}


def fastfood_transform(
    x: torch.Tensor, sign: torch.Tensor, gauss: torch.Tensor, scale: torch.Tensor, perm: torch.Tensor, m: int
) -> torch.Tensor:
    """``omega_r . x`` for the m FastFood rows, in ``O(m log n)`` per vector with the fast Walsh-Hadamard transform.

    Args:
        x (torch.Tensor): ``[..., d]``, d <= n (zero-padded to n).
        sign, gauss, scale (torch.Tensor): ``[k, n]`` diagonals B, G, S.
        perm (torch.Tensor): ``[k, n]`` int64 permutations Pi.
        m (int): number of rows kept (<= k n).

    Returns:
        torch.Tensor: ``[..., m]``.
    """
    k, n = sign.shape
    d = x.shape[-1]
    if d > n:
        raise ValueError(f"x has {d} features but the FastFood blocks are {n} wide")
    lead = x.shape[:-1]
    h = torch.nn.functional.pad(x, (0, n - d)).reshape(-1, 1, n) * sign  # (T, k, n)
    h = fast_walsh_hadamard(h)
    h = torch.gather(h, 2, perm.expand(h.shape[0], k, n)) * gauss
    h = fast_walsh_hadamard(h) * scale * n**-0.5
    return h.reshape(*lead, k * n)[..., :m]


def fastfood_matrix(
    d: int, sign: torch.Tensor, gauss: torch.Tensor, scale: torch.Tensor, perm: torch.Tensor, m: int
) -> torch.Tensor:
    """The explicit ``[m, d]`` matrix of :func:`fastfood_transform` (its transform of the identity)."""
    eye = torch.eye(d, dtype=sign.dtype, device=sign.device)
    return fastfood_transform(eye, sign, gauss, scale, perm, m).transpose(0, 1)


def fastfood_weights(m: int, d: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A FastFood matrix drawn and materialised: ``[m, d]`` (for tests and the statistical benchmark)."""
    return fastfood_matrix(d, **draw_fastfood(m, d, generator), m=m)


def draw_weights(name: str, m: int, d: int, generator: torch.Generator | None = None, **options) -> torch.Tensor:
    """Draw an ``[m, d]`` matrix by name (see :data:`WEIGHT_NAMES`); FastFood names are materialised.

    Raises:
        ValueError: unknown name.
    """
    if name in FASTFOOD:
        return fastfood_weights(m, d, generator)
    if name not in WEIGHT_SAMPLERS:
        raise ValueError(f"unknown weight matrix {name!r}; choose one of {list(WEIGHT_NAMES)}")
    return WEIGHT_SAMPLERS[name](m, d, generator, **options)
