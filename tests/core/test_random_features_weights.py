"""Weight matrices for random features: structure checked exactly, distributions checked against measured errors."""

import math

import pytest
import torch

from core.ops.feature_weights import (
    WEIGHT_NAMES,
    draw_fastfood,
    draw_weights,
    fastfood_matrix,
    fastfood_transform,
    gauss_hermite_rule,
    moment_matched_weights,
    orthogonal_weights,
    quadrature_weights,
    signed_circulant_weights,
    structured_orthogonal_weights,
)
from core.ops.hadamard import fast_walsh_hadamard, hadamard_matrix


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of tiny ops: one thread avoids oversubscribing shared cores; the setting is restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [1, 2, 8, 64, 512])
def test_fast_walsh_hadamard_equals_explicit_matrix(n):
    x = torch.randn(3, 5, n, generator=gen(), dtype=torch.float64)
    h = hadamard_matrix(n)
    torch.testing.assert_close(fast_walsh_hadamard(x), x @ h)
    for radix in (2, 4, 8):
        torch.testing.assert_close(fast_walsh_hadamard(x, radix=radix), x @ h)
    torch.testing.assert_close(fast_walsh_hadamard(x, normalized=True), x @ h / math.sqrt(n))
    torch.testing.assert_close(h @ h.T, n * torch.eye(n, dtype=torch.float64))


def test_fast_walsh_hadamard_rejects_other_lengths():
    with pytest.raises(ValueError, match="power-of-two"):
        fast_walsh_hadamard(torch.randn(4, 12))


@pytest.mark.parametrize("name", WEIGHT_NAMES)
@pytest.mark.parametrize("m, d", [(40, 16), (7, 12), (64, 64)])
def test_every_matrix_has_the_requested_shape_and_nonzero_rows(name, m, d):
    w = draw_weights(name, m, d, gen(1))
    assert w.shape == (m, d) and w.dtype == torch.float64
    assert torch.isfinite(w).all()
    assert (w.norm(dim=1) > 0).all(), f"{name}: a row is zero"


@pytest.mark.parametrize("name", WEIGHT_NAMES)
def test_entries_have_zero_mean_and_unit_variance(name):
    """Pool many draws; the empirical mean and second moment are within 5 measured standard errors of 0 and 1."""
    d = 12
    w = torch.cat([draw_weights(name, 48, d, gen(seed)) for seed in range(60)]).flatten()
    n = w.numel()
    mean_se = w.std() / math.sqrt(n)
    assert abs(w.mean()) < 5 * mean_se + 1e-12
    sq = w.pow(2)
    assert abs(sq.mean() - 1) < 5 * sq.std() / math.sqrt(n) + 0.02, f"{name}: E[w^2] = {sq.mean():.3f}"


def test_orf_blocks_are_orthogonal_with_chi_norms():
    d, m = 16, 40
    w = orthogonal_weights(m, d, gen(2))
    unit = w / w.norm(dim=1, keepdim=True)
    for start in range(0, m, d):
        block = unit[start : start + d]
        torch.testing.assert_close(block @ block.T, torch.eye(block.shape[0], dtype=torch.float64))
    norms = torch.cat([orthogonal_weights(m, d, gen(s)).pow(2).sum(1) for s in range(30)])  # chi^2_d: mean d
    assert abs(norms.mean() - d) < 5 * norms.std() / math.sqrt(norms.numel())
    assert abs(norms.var() - 2 * d) < 0.2 * 2 * d  # not fixed at sqrt(d): chi, not constant


def test_sorf_blocks_have_orthogonal_rows_with_chi_norms():
    d = 32
    w = structured_orthogonal_weights(64, d, gen(3))
    unit = w / w.norm(dim=1, keepdim=True)
    for block in (unit[:32], unit[32:]):
        torch.testing.assert_close(block @ block.T, torch.eye(d, dtype=torch.float64))
    assert not torch.allclose(unit[:32], unit[32:])
    assert w.norm(dim=1).std() > 0.1  # Gaussian norms, not the constant sqrt(d) of the bare product


def test_scrf_rows_are_signed_cyclic_shifts_of_one_gaussian_vector():
    d = 8
    w = signed_circulant_weights(20, d, gen(4))
    first = w[0].abs()
    for i in range(1, d):
        torch.testing.assert_close(w[i].abs(), torch.roll(first, shifts=i))
    assert w.abs().min() > 0  # upstream's SCRF was all zeros for m > d


def test_gauss_hermite_rule_integrates_normal_moments_exactly():
    for points in (3, 5, 8):
        nodes, prob = gauss_hermite_rule(points)
        assert abs(prob.sum() - 1) < 1e-12
        for k in range(0, 2 * points):
            exact = 0.0 if k % 2 else float(math.prod(range(k - 1, 0, -2)))  # (k-1)!! for even k
            assert abs((prob * nodes**k).sum() - exact) < 1e-8 * max(1.0, exact), (points, k)


def test_sgq_entries_are_quadrature_nodes():
    nodes, _ = gauss_hermite_rule(5)
    w = quadrature_weights(64, 8, gen(5), quadrature_points=5)
    assert torch.isin(w, nodes).all()
    assert len(torch.unique(w)) == 5


def test_moment_matching_is_exact():
    w = moment_matched_weights(50, 10, gen(6))
    torch.testing.assert_close(w.mean(0), torch.zeros(10, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(w.T @ w / 50, torch.eye(10, dtype=torch.float64))
    few = moment_matched_weights(6, 10, gen(7))
    torch.testing.assert_close(few.pow(2).mean(0), torch.ones(10, dtype=torch.float64))


def explicit_fastfood(sign, gauss, scale, perm, d, m):
    """Dense ``n^{-1/2} S H G Pi H B`` per block, stacked, first d columns and m rows: the reference."""
    k, n = sign.shape
    h = hadamard_matrix(n)
    blocks = []
    for b in range(k):
        permutation = torch.eye(n, dtype=torch.float64)[perm[b]]  # (Pi x)_i = x_perm[i]
        blocks.append(torch.diag(scale[b]) @ h @ torch.diag(gauss[b]) @ permutation @ h @ torch.diag(sign[b]) / math.sqrt(n))
    return torch.cat(blocks)[:m, :d]


@pytest.mark.parametrize("m, d", [(40, 16), (100, 24), (5, 3)])
def test_fastfood_transform_equals_the_dense_product(m, d):
    draws = draw_fastfood(m, d, gen(8))
    reference = explicit_fastfood(**draws, d=d, m=m)
    torch.testing.assert_close(fastfood_matrix(d, **draws, m=m), reference)
    x = torch.randn(2, 7, d, generator=gen(9), dtype=torch.float64)
    torch.testing.assert_close(fastfood_transform(x, **draws, m=m), x @ reference.T)


def test_fastfood_rows_have_chi_norms_when_d_is_a_power_of_two():
    d = 16
    draws = draw_fastfood(32, d, gen(10))
    w = fastfood_matrix(d, **draws, m=32)
    expected = (draws["scale"] * draws["gauss"].norm(dim=1, keepdim=True)).flatten()
    torch.testing.assert_close(w.norm(dim=1), expected)
