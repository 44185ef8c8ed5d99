"""The Newton-Schulz pseudo-inverse against torch.linalg, and its per-matrix initial scaling."""

import pytest
import torch

from core.ops.gaussian import gaussian_kernel
from core.ops.pinv import initial_iterate, newton_schulz_pinv, reference_pinv, regularized_kernel_inverse


def well_conditioned(batch, rows, cols, seed=0):
    """Random matrices with singular values in [1, 4] (condition number <= 4)."""
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(batch, rows, rows, generator=g, dtype=torch.float64))
    w, _ = torch.linalg.qr(torch.randn(batch, cols, cols, generator=g, dtype=torch.float64))
    rank = min(rows, cols)
    singular = 1 + 3 * torch.rand(batch, rank, generator=g, dtype=torch.float64)
    return u[..., :rank] @ torch.diag_embed(singular) @ w[..., :rank].transpose(-1, -2)


@pytest.mark.parametrize("shape", [(7, 7), (9, 5), (5, 9)])
def test_newton_schulz_matches_torch_pinv_on_well_conditioned_input(shape):
    a = well_conditioned(3, *shape)
    torch.testing.assert_close(newton_schulz_pinv(a, iterations=12), torch.linalg.pinv(a), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(reference_pinv(a), torch.linalg.pinv(a))


def test_too_few_iterations_do_not_converge():
    """The comparison above can fail: one iteration from the scaled start is far from the pseudo-inverse."""
    a = well_conditioned(2, 7, 7)
    error = (newton_schulz_pinv(a, iterations=1) - torch.linalg.pinv(a)).abs().max()
    assert error > 1e-3


def test_initial_iterate_is_scaled_per_matrix():
    """A large matrix in the batch must not slow the convergence of a small one (upstream scales globally)."""
    a = well_conditioned(1, 6, 6)
    batch = torch.cat([a, 1e4 * a])
    torch.testing.assert_close(initial_iterate(batch)[0], initial_iterate(a)[0])
    z = newton_schulz_pinv(batch, iterations=12)
    torch.testing.assert_close(z[0], torch.linalg.pinv(a)[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(z[1], torch.linalg.pinv(a)[0] / 1e4, rtol=1e-10, atol=1e-16)


def test_spectral_norm_of_scaled_iterate_is_at_most_one():
    a = torch.randn(4, 10, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    product = a @ initial_iterate(a)
    assert (torch.linalg.matrix_norm(product, ord=2) <= 1 + 1e-12).all()


@pytest.mark.parametrize("ridge", [0.1, 1e-3])
def test_regularized_kernel_inverse_matches_exact_inverse(ridge):
    g = torch.Generator().manual_seed(1)
    points = torch.randn(2, 3, 16, 4, generator=g, dtype=torch.float64)
    kernel = gaussian_kernel(points, points)
    exact = torch.linalg.inv(kernel + ridge * torch.eye(16, dtype=torch.float64))
    torch.testing.assert_close(regularized_kernel_inverse(kernel, ridge, method="solve"), exact)
    iterative = regularized_kernel_inverse(kernel, ridge, iterations=40)
    torch.testing.assert_close(iterative, exact, rtol=1e-8, atol=1e-8)


def test_regularized_kernel_inverse_rejects_bad_options():
    kernel = torch.eye(3)
    with pytest.raises(ValueError, match="ridge"):
        regularized_kernel_inverse(kernel, -1.0)
    with pytest.raises(ValueError, match="method"):
        regularized_kernel_inverse(kernel, 0.1, method="cholesky")
