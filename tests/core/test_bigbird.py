"""BigBird: the gathered block-sparse op against dense softmax under the same mask, in float64."""

import pytest
import torch

import core
from core.ops.block_sparse import bigbird_attention, bigbird_block_mask, bigbird_layout, reference_bigbird_attention
from core.ops.softmax import reference_softmax_attention


def inputs(b=2, h=2, n=45, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("n", [45, 48, 7])
@pytest.mark.parametrize("num_random", [0, 2, 20])
@pytest.mark.parametrize("masked", [False, True])
def test_gathered_equals_dense_masked_softmax(n, num_random, masked):
    q, k, v = inputs(n=n)
    mask = torch.rand(2, n, generator=torch.Generator().manual_seed(2)) > 0.3 if masked else None
    out = bigbird_attention(q, k, v, mask, block_size=4, num_random=num_random, seed=3)
    expected = reference_bigbird_attention(q, k, v, mask, block_size=4, num_random=num_random, seed=3)
    real = slice(None) if mask is None else mask[:, None, :, None].expand_as(out)
    torch.testing.assert_close(out[real], expected[real], rtol=1e-10, atol=1e-12)


def test_layout_follows_the_definition():
    nb, r = 12, 3
    mask = bigbird_block_mask(nb, r, seed=1)
    assert mask[0].all() and mask[-1].all() and mask[:, 0].all() and mask[:, -1].all()
    for i in range(1, nb - 1):
        assert mask[i, max(i - 1, 0) : i + 2].all()
        window_and_global = {i - 1, i, i + 1, 0, nb - 1}
        random = set(torch.nonzero(mask[i]).flatten().tolist()) - window_and_global
        assert len(random) == r
    assert bigbird_layout(nb, r, 1) == bigbird_layout(nb, r, 1)
    assert bigbird_layout(nb, r, 1) != bigbird_layout(nb, r, 2)


def test_all_random_blocks_is_exact_softmax():
    """When the random blocks cover every block, BigBird is exact softmax attention."""
    q, k, v = inputs()
    mask = torch.arange(45)[None, :] < torch.tensor([45, 30])[:, None]
    out = bigbird_attention(q, k, v, mask, block_size=4, num_random=100)
    expected = reference_softmax_attention(q, k, v, mask)
    torch.testing.assert_close(out[0], expected[0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out[1, :, :30], expected[1, :, :30], rtol=1e-10, atol=1e-12)


def test_sparse_pattern_differs_from_softmax():
    q, k, v = inputs(n=64)
    assert not torch.allclose(bigbird_attention(q, k, v, block_size=4, num_random=1), reference_softmax_attention(q, k, v))


def test_module_equals_dense_reference_on_its_projections():
    torch.manual_seed(0)
    module = core.build_attention("bigbird", 24, 3, block_size=4, num_random=2).double()
    x = torch.randn(2, 41, 24, dtype=torch.float64)
    q, k, v = module.project_qkv(x)
    expected = module.out_proj(module.merge_heads(reference_bigbird_attention(q, k, v, None, 4, 2, 0)))
    torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(module.attention_matrix(x) @ v, reference_bigbird_attention(q, k, v, None, 4, 2, 0))
