"""Softmax attention: SDPA path vs an explicit float64 softmax written out here."""

import math

import pytest
import torch

import core
from core.ops.softmax import reference_softmax_attention, softmax_attention


def explicit_softmax(q, k, v, mask=None, causal=False):
    """Loop-free textbook softmax attention with -inf masking, computed in float64."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    n = q.shape[-2]
    allowed = torch.ones(n, n, dtype=torch.bool)
    if causal:
        allowed = allowed.tril()
    allowed = allowed[None, None].expand(q.shape[0], 1, n, n).clone()
    if mask is not None:
        allowed &= mask[:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_matches_explicit_softmax(causal, masked):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 20, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = None
    if masked:
        mask = torch.ones(2, 20, dtype=torch.bool)
        mask[1, 13:] = False
        if causal:  # keep a real first token so every real query has a real key
            mask[0, 5:9] = False
    expected = explicit_softmax(q, k, v, mask, causal)
    for out in (softmax_attention(q, k, v, mask, causal), reference_softmax_attention(q, k, v, mask, causal)):
        real = slice(None) if mask is None else mask[:, None, :, None].expand_as(out)
        torch.testing.assert_close(out[real], expected[real], rtol=1e-10, atol=1e-12)


def test_module_matches_explicit_formula():
    torch.manual_seed(0)
    m = core.build_attention("softmax", 16, 2).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    q = (x @ m.q_proj.weight.T + m.q_proj.bias).view(2, 11, 2, 8).transpose(1, 2)
    k = (x @ m.k_proj.weight.T + m.k_proj.bias).view(2, 11, 2, 8).transpose(1, 2)
    v = (x @ m.v_proj.weight.T + m.v_proj.bias).view(2, 11, 2, 8).transpose(1, 2)
    heads = explicit_softmax(q, k, v).transpose(1, 2).reshape(2, 11, 16)
    torch.testing.assert_close(m(x), heads @ m.out_proj.weight.T + m.out_proj.bias)


def test_attention_matrix_rows_sum_to_one_and_respect_mask():
    m = core.build_attention("softmax", 16, 2, causal=True).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 6:] = False
    a = m.attention_matrix(x, mask)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 2, 9, dtype=torch.float64))
    assert (a.triu(1) == 0).all()
    assert (a[0, :, :6, 6:] == 0).all()
