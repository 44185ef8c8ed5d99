"""PSF-Attn: the gather form against the dense product of the explicit chord factor matrices, in float64."""

import pytest
import torch

import core
from core.ops.chord import (
    chord_indices,
    chord_mix,
    chord_offsets,
    chord_product,
    chord_product_matrix,
    reference_chord_product,
)
from core.ops.chord_shift import shift_product

MASK = torch.tensor([[True] * 13, [True] * 8 + [False] * 5, [False, True, True, False, True, True, True, False] + [True] * 5])


def brute_force_links(num_links, n, mask_row=None, causal=False):
    """Python loops: the set of (row, column) links, over the real tokens in order."""
    real = list(range(n)) if mask_row is None else [i for i in range(n) if mask_row[i]]
    links = []
    for rank, row in enumerate(real):
        for offset in chord_offsets(num_links):
            target = rank - offset if causal else (rank + offset) % len(real)
            if 0 <= target < len(real):
                links.append((row, real[target]))
    return sorted(links)


def links_of(index, valid, b):
    rows, ks = torch.meshgrid(torch.arange(index.shape[1]), torch.arange(index.shape[2]), indexing="ij")
    keep = torch.ones_like(rows, dtype=torch.bool) if valid is None else valid[b]
    return sorted(zip(rows[keep].tolist(), index[b][keep].tolist()))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_chord_indices_match_the_definition(causal, masked):
    mask = MASK if masked else None
    index, valid = chord_indices(5, 13, mask, causal)
    for b in range(3 if masked else 1):
        assert links_of(index, valid, b) == brute_force_links(5, 13, None if mask is None else mask[b], causal)


def test_upstream_pattern_wraps_and_duplicates_self():
    """N = 8 with offsets 0, 1, 2, 4, 8: the last link is a second self link (upstream's Pathfinder quirk)."""
    index, valid = chord_indices(5, 8)
    assert valid is None
    assert index[0, 6].tolist() == [6, 7, 0, 2, 6]


def random_factors(m, b, h, n, k, c, seed=0):
    g = torch.Generator().manual_seed(seed)
    factors = torch.randn(m, b, h, n, k, generator=g, dtype=torch.float64) / k
    v = torch.randn(b, h, n, c, generator=g, dtype=torch.float64)
    return factors, v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("residual", [False, True])
def test_gather_product_equals_dense_product(causal, masked, residual):
    factors, v = random_factors(4, 3, 2, 13, 5, 6)
    index, valid = chord_indices(5, 13, MASK if masked else None, causal)
    out = chord_product(factors, v, index, valid, residual)
    torch.testing.assert_close(out, reference_chord_product(factors, v, index, valid, residual), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, chord_product_matrix(factors, index, valid, residual) @ v, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n, block", [(3, None), (8, None), (13, None), (13, 1), (13, 3), (13, 5), (13, 12)])
def test_shift_product_and_its_gradients_equal_dense(causal, n, block):
    """The unpadded fast path, including lengths where offsets wrap (n = 3) or repeat self (n = 8), in blocks."""
    factors, v = random_factors(3, 2, 2, n, 5, 4, seed=n)
    index, valid = chord_indices(5, n, None, causal)
    weight = torch.randn(2, 2, n, 4, dtype=torch.float64)
    grads = []
    for product in (shift_product, reference_chord_product):
        f, w = factors.clone().requires_grad_(True), v.clone().requires_grad_(True)
        if product is shift_product:
            out = product(f, w, causal=causal, block_size=block)
        else:
            out = product(f, w, index, valid)
        (out * weight).sum().backward()
        grads.append((out.detach(), f.grad, w.grad))
    for fast, dense in zip(*grads):
        torch.testing.assert_close(fast, dense, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("masked", [False, True])
def test_gather_gradients_equal_dense_gradients(masked):
    factors, v = random_factors(3, 3, 2, 13, 5, 4, seed=1)
    index, valid = chord_indices(5, 13, MASK if masked else None, causal=masked)
    weight = torch.randn(3, 2, 13, 4, dtype=torch.float64)
    grads = []
    for product in (chord_product, reference_chord_product):
        f, w = factors.clone().requires_grad_(True), v.clone().requires_grad_(True)
        (product(f, w, index, valid) * weight).sum().backward()
        grads.append((f.grad, w.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-12)


def test_chord_mix_passes_gradcheck():
    factors, v = random_factors(1, 2, 1, 7, 4, 3, seed=2)
    index, _ = chord_indices(4, 7, torch.tensor([[True] * 7, [True] * 5 + [False] * 2]))
    assert torch.autograd.gradcheck(chord_mix, (factors[0].requires_grad_(True), v.requires_grad_(True), index))


@pytest.mark.parametrize("causal", [False, True])
def test_module_without_mask_equals_dense_product(causal):
    torch.manual_seed(0)
    module = core.build_attention("psf", 24, 3, causal=causal, num_factors=4).double()
    x = torch.randn(2, 13, 24, dtype=torch.float64)
    matrix = module.attention_matrix(x)
    expected = module.out_proj((matrix @ module.values(x)).transpose(1, 2).reshape(2, 13, module.value_dim))
    torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_module_equals_dense_product_of_its_factors(causal):
    torch.manual_seed(0)
    module = core.build_attention("psf", 24, 3, causal=causal, num_factors=4).double()
    x = torch.randn(2, 13, 24, dtype=torch.float64)
    mask = MASK[1:]
    index, valid = chord_indices(5, 13, mask, causal)
    dense = reference_chord_product(module.factors(x), module.values(x), index, valid)
    expected = module.out_proj(dense.transpose(1, 2).reshape(2, 13, module.value_dim))
    torch.testing.assert_close(module(x, key_padding_mask=mask), expected, rtol=1e-10, atol=1e-12)
    matrix = module.attention_matrix(x, key_padding_mask=mask)
    torch.testing.assert_close(matrix @ module.values(x), dense, rtol=1e-10, atol=1e-12)


def test_factor_mlps_are_independent():
    """Factor m depends only on its own MLP: perturbing MLP 1's weights changes no other factor."""
    torch.manual_seed(0)
    module = core.build_attention("psf", 24, 3, num_factors=3).double()
    x = torch.randn(2, 9, 24, dtype=torch.float64)
    before = module.factors(x)
    with torch.no_grad():
        module.factor_mlps.second_weight[1] += 1.0
        module.factor_mlps.first.weight[32:64] += 1.0
    after = module.factors(x)
    torch.testing.assert_close(after[[0, 2]], before[[0, 2]])
    assert not torch.allclose(after[1], before[1])


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="num_factors"):
        core.build_attention("psf", 24, 3, num_factors=0)
    with pytest.raises(ValueError, match="value_dim=8 is not divisible"):
        core.build_attention("psf", 24, 3, value_dim=8)
