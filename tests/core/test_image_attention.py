"""LinearImageAttention against an explicit per-head attention matrix over positions, in float64."""

import pytest
import torch

from core.attention.image import LinearImageAttention


def build(**options):
    torch.manual_seed(0)
    return LinearImageAttention(6, num_heads=2, key_dim=4, value_dim=3, **options).double()


def explicit(module, x, context=None):
    """Double loop over positions: out[:, p] = sum_p' A[p, p'] v[:, p'], A from the normalised q and k."""
    q, k, v = module.normalized_qkv(x, context)
    b, h, _, p = q.shape
    out = torch.zeros(b, h, v.shape[2], p, dtype=torch.float64)
    for i in range(p):
        for j in range(k.shape[-1]):
            weight = (q[..., i] * k[..., j]).sum(-1, keepdim=True)  # (B, h, 1)
            out[..., i] += weight * v[..., j]
    return out


@pytest.mark.parametrize("norm_queries", [True, False])
@pytest.mark.parametrize("with_context", [False, True])
def test_forward_equals_explicit_attention(norm_queries, with_context):
    module = build(norm_queries=norm_queries)
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    context = torch.randn(2, 6, 3, 3, dtype=torch.float64) if with_context else None
    out = explicit(module, x, context)
    expected = module.out_conv(out.reshape(2, 6, 5, 4))
    torch.testing.assert_close(module(x, context), expected, rtol=1e-10, atol=1e-12)


def test_rows_are_convex_combinations_with_normalised_queries():
    module = build()
    matrix = module.attention_matrix(torch.randn(2, 6, 5, 4, dtype=torch.float64))
    assert matrix.shape == (2, 2, 20, 20) and (matrix >= 0).all()
    torch.testing.assert_close(matrix.sum(-1), torch.ones(2, 2, 20, dtype=torch.float64))


def test_strided_convolutions_shrink_the_map():
    module = build(kernel_size=3, padding=1, stride=2)
    x = torch.randn(2, 6, 7, 8, dtype=torch.float64)
    out = module(x)
    assert out.shape == (2, 6, 4, 4)
    expected = module.out_conv(explicit(module, x).reshape(2, 6, 4, 4))
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_clear_errors():
    module = build()
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 6, H, W\)"):
        module(torch.randn(2, 5, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="context"):
        module(torch.randn(2, 6, 4, 4, dtype=torch.float64), torch.randn(2, 5, 4, 4, dtype=torch.float64))
