"""The PSF non-parametric tool: the dense chord product, the SVD baseline, and a fit that can lose or win."""

import math

import pytest
import torch

from core.analysis.chord_fit import (
    chord_product_dense,
    chord_shape,
    compare_with_svd,
    generated_matrices,
    initial_factors,
    truncated_svd_error,
)


def test_shapes_follow_the_paper():
    assert chord_shape(64) == (6, 7)
    assert chord_shape(100) == (7, 7)
    with pytest.raises(ValueError, match="at least 2 x 2"):
        chord_shape(1)


def test_dense_product_matches_the_definition():
    n = 10
    values = torch.randn(4, n, 4, dtype=torch.float64)
    product = torch.eye(n, dtype=torch.float64)
    for factor in values:
        w = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            for k, offset in enumerate([0, 1, 2, 4]):
                w[i, (i + offset) % n] += factor[i, k]
        product = product @ w
    torch.testing.assert_close(chord_product_dense(values), product)


def test_a_cyclic_shift_is_exactly_a_chord_product():
    """Shift by 11 = 8 + 2 + 1 with four factors: three shifting, one identity."""
    n = 16
    values = torch.zeros(4, n, 5, dtype=torch.float64)
    for m, link in enumerate([4, 2, 1, 0]):  # offsets 8, 2, 1, 0
        values[m, :, link] = 1.0
    shift = torch.zeros(n, n, dtype=torch.float64)
    shift[torch.arange(n), (torch.arange(n) + 11) % n] = 1.0
    torch.testing.assert_close(chord_product_dense(values), shift)


def test_svd_baseline_is_the_best_rank_r_error():
    a = generated_matrices(12)["sparse_random"]
    u, s, vh = torch.linalg.svd(a)
    best = u[:, :5] @ torch.diag(s[:5]) @ vh[:5]
    assert math.isclose(truncated_svd_error(a, 5), float((a - best).norm()), rel_tol=1e-10)


def test_initial_factors_are_row_normalised_masks_plus_small_noise():
    values = initial_factors(16)
    assert values.shape == (4, 16, 5)
    assert ((values - 1 / 5).abs() <= 1e-2).all()


def test_sparse_high_rank_favours_chord_and_low_rank_favours_svd():
    matrices = generated_matrices(16)
    sparse = compare_with_svd(matrices["banded"], steps=20)
    low_rank = compare_with_svd(matrices["low_rank"], steps=5)
    assert sparse.history[-1] < 0.5 * sparse.history[0]
    assert sparse.chord_error < sparse.svd_error
    assert low_rank.svd_error < 1e-9 < low_rank.chord_error
    assert sparse.chord_parameters == 4 * 16 * 5 and sparse.svd_rank == 8
