"""Linformer against its explicit formula; E and F are trained parameters."""

import math

import pytest
import torch

import core


def explicit_linformer(module, x, mask=None):
    """softmax(Q (E K)^T / sqrt(d)) (F V) per head, written out with einsum, then the output projection."""
    b, n, _ = x.shape
    h, d = module.num_heads, module.head_dim
    q, k, v = (proj(x).reshape(b, n, h, d) for proj in (module.q_proj, module.k_proj, module.v_proj))
    if mask is not None:
        k, v = k * mask[:, :, None, None], v * mask[:, :, None, None]
    e = module.key_projection[:, :n]
    f = e if module.value_projection is None else module.value_projection[:, :n]
    k_p = torch.einsum("kn,bnhd->bhkd", e, k)
    v_p = torch.einsum("kn,bnhd->bhkd", f, v)
    scores = torch.einsum("bnhd,bhkd->bhnk", q, k_p) / math.sqrt(d)
    heads = torch.einsum("bhnk,bhkd->bnhd", torch.softmax(scores, -1), v_p).reshape(b, n, h * d)
    return module.out_proj(heads)


@pytest.mark.parametrize("share_kv", [False, True])
def test_matches_explicit_formula_with_and_without_padding(share_kv):
    torch.manual_seed(0)
    m = core.build_attention("linformer", 16, 2, max_len=40, proj_dim=6, share_kv=share_kv).double()
    x = torch.randn(2, 29, 16, dtype=torch.float64)
    mask = torch.ones(2, 29, dtype=torch.bool)
    mask[1, 20:] = False
    mask[0, 4] = False
    torch.testing.assert_close(m(x), explicit_linformer(m, x), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(m(x, key_padding_mask=mask), explicit_linformer(m, x, mask), rtol=1e-10, atol=1e-12)
    v = m.v_proj(x).reshape(2, 29, 2, 8).transpose(1, 2)
    out = m.attention_matrix(x, mask) @ v
    torch.testing.assert_close(m.out_proj(m.merge_heads(out)), explicit_linformer(m, x, mask), rtol=1e-10, atol=1e-12)


def test_projections_are_trained_and_saved():
    m = core.build_attention("linformer", 16, 2, max_len=32, proj_dim=4)
    names = dict(m.named_parameters())
    assert {"key_projection", "value_projection"} <= set(names) and "key_projection" in m.state_dict()
    optimizer = torch.optim.SGD(m.parameters(), lr=0.1)
    before = m.key_projection.detach().clone()
    m(torch.randn(2, 32, 16)).pow(2).mean().backward()
    optimizer.step()
    assert not torch.equal(before, m.key_projection.detach())
    shared = core.build_attention("linformer", 16, 2, max_len=32, proj_dim=4, share_kv=True)
    assert shared.value_projection is None


def test_too_long_sequences_and_causal_are_refused():
    m = core.build_attention("linformer", 16, 2, max_len=8)
    with pytest.raises(ValueError, match="exceeds max_len=8"):
        m(torch.randn(1, 9, 16))
    with pytest.raises(ValueError, match="no causal form"):
        core.build_attention("linformer", 16, 2, causal=True)
