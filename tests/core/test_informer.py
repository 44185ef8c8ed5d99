"""ProbSparse attention: exact when u = L, the right queries selected, mean(V) elsewhere."""

import math

import pytest
import torch

import core
from core.ops.probsparse import probsparse_attention, probsparse_attention_weights, probsparse_counts
from core.ops.softmax import reference_softmax_attention


def qkv(b=2, h=2, n=30, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for _ in range(3)]


def test_counts_are_c_ceil_ln_l_capped_at_l():
    mask = torch.zeros(3, 100, dtype=torch.bool)
    mask[0, :100], mask[1, :20], mask[2, :3] = True, True, True
    assert probsparse_counts(mask, 3, 100, 5.0).tolist() == [25, 15, 3]
    assert probsparse_counts(None, 1, 1024, 5.0).tolist() == [35]


def test_with_u_equal_to_n_it_is_exact_softmax():
    q, k, v = qkv()
    out = probsparse_attention(q, k, v, factor=1e6)
    torch.testing.assert_close(out, reference_softmax_attention(q, k, v), rtol=1e-10, atol=1e-12)


def test_with_u_equal_to_each_real_length_it_is_exact_masked_softmax():
    """The measure and top-u path (not the all-selected shortcut): padding anywhere, u = L per sequence."""
    q, k, v = qkv()
    mask = torch.ones(2, 30, dtype=torch.bool)
    mask[0, [3, 11, 12]] = False
    mask[1, 21:] = False
    out = probsparse_attention(q, k, v, mask, factor=1e6)
    expected = reference_softmax_attention(q, k, v, mask)
    real = mask[:, None, :, None].expand_as(out)
    torch.testing.assert_close(out[real], expected[real], rtol=1e-10, atol=1e-12)


def test_top_queries_by_full_measure_get_softmax_the_rest_get_mean_v():
    """factor 1 on N = 30: u = U = ceil(ln 30) = 4 of 30 keys; compare with a brute-force transcription."""
    q, k, v = qkv()
    out = probsparse_attention(q, k, v, factor=1.0)
    n, d = 30, 8
    positions = [int((i + 0.5) / 4 * n) for i in range(4)]  # the stratified key sample
    scores = q @ k[:, :, positions].transpose(-1, -2) / math.sqrt(d)
    measure = scores.amax(-1) - scores.mean(-1)
    top = measure.topk(4, dim=-1).indices
    expected = v.mean(-2, keepdim=True).expand_as(v).clone()
    full = reference_softmax_attention(q, k, v)
    for b in range(2):
        for h in range(2):
            expected[b, h, top[b, h]] = full[b, h, top[b, h]]
    torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(probsparse_attention_weights(q, k, factor=1.0) @ v, out, rtol=1e-10, atol=1e-12)


def test_module_padding_anywhere_equals_compacted_run_and_training_samples_randomly():
    torch.manual_seed(0)
    m = core.build_attention("informer", 16, 2, factor=1.0).double().eval()
    x = torch.randn(2, 40, 16, dtype=torch.float64)
    mask = torch.ones(2, 40, dtype=torch.bool)
    mask[0, [0, 5, 6]] = False
    mask[1, 25:] = False
    out = m(x, key_padding_mask=mask)
    for i in range(2):
        torch.testing.assert_close(out[i : i + 1, mask[i]], m(x[i : i + 1, mask[i]]), rtol=1e-10, atol=1e-12)
    m.train()
    outs = [m(x) for _ in range(5)]
    assert all(torch.isfinite(o).all() for o in outs)
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])


def test_refuses_causal_and_bad_factor():
    with pytest.raises(ValueError, match="no causal form"):
        core.build_attention("informer", 16, 2, causal=True)
    with pytest.raises(ValueError, match="factor"):
        core.build_attention("informer", 16, 2, factor=0)
