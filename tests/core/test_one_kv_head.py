"""``one_kv_head`` on the linear family: equal to the multi-head layer whose heads all carry the shared key/value
projection, in float64, for every form (non-causal, causal, recurrent decoding)."""

import pytest
import torch

import core

FAMILY = [("linear", False), ("linear", True), ("cosine", False), ("cosine", True), ("efficient", False)]


def pair(name, causal, dim=24, heads=3):
    torch.manual_seed(0)
    shared = core.build_attention(name, dim, heads, causal=causal, one_kv_head=True).double()
    tiled = core.build_attention(name, dim, heads, causal=causal).double()
    state = shared.state_dict()
    for proj in ("k_proj", "v_proj"):
        state[f"{proj}.weight"] = state[f"{proj}.weight"].repeat(heads, 1)
        state[f"{proj}.bias"] = state[f"{proj}.bias"].repeat(heads)
    tiled.load_state_dict(state)
    return shared, tiled


@pytest.mark.parametrize("name, causal", FAMILY)
def test_one_kv_head_equals_tiled_heads(name, causal):
    shared, tiled = pair(name, causal)
    assert shared.k_proj.weight.shape == (8, 24) and shared.v_proj.weight.shape == (8, 24)
    x = torch.randn(2, 13, 24, dtype=torch.float64)
    mask = torch.arange(13)[None, :] < torch.tensor([13, 9])[:, None]
    for m in (None, mask):
        torch.testing.assert_close(shared(x, key_padding_mask=m), tiled(x, key_padding_mask=m), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(shared.attention_matrix(x, mask), tiled.attention_matrix(x, mask), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_one_kv_head_decoding_equals_parallel(name):
    shared, _ = pair(name, True)
    x = torch.randn(2, 11, 24, dtype=torch.float64)
    state, steps = None, []
    for t in range(11):
        y, state = shared.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, dim=1), shared(x), rtol=1e-10, atol=1e-12)
    assert state["S"].shape[1] == 1  # one state for all heads
