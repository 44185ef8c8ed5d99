"""Linear attention: every form against explicit kernel sums in float64, and chunked == prefix-sum == recurrent."""

import pytest
import torch
import torch.nn.functional as F

import core
from core.ops.linear import (
    causal_linear_attention,
    causal_linear_attention_prefix_sum,
    elu_feature_map,
    linear_attention,
    linear_attention_step,
)


def features(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [F.elu(torch.randn(*shape, generator=g, dtype=torch.float64)) + 1 for _ in range(2)] + [
        torch.randn(*shape[:-1], 5, generator=g, dtype=torch.float64)
    ]


def brute_force(q, k, v, mask=None, causal=False, normalize=True, eps=1e-6):
    """Double loop over queries and keys: out_i = sum_j (q_i . k_j) v_j / (sum_j q_i . k_j + eps)."""
    b, h, n, _ = q.shape
    out = torch.zeros(b, h, n, v.shape[-1], dtype=torch.float64)
    for i in range(n):
        num = torch.zeros(b, h, v.shape[-1], dtype=torch.float64)
        den = torch.zeros(b, h, 1, dtype=torch.float64)
        for j in range(n):
            if causal and j > i:
                continue
            w = (q[:, :, i] * k[:, :, j]).sum(-1, keepdim=True)
            if mask is not None:
                w = w * mask[:, j, None, None]
            num += w * v[:, :, j]
            den += w
        out[:, :, i] = num / (den + eps) if normalize else num
    return out


@pytest.mark.parametrize("masked", [False, True])
def test_non_causal_matches_brute_force(masked):
    q, k, v = features(2, 3, 13, 4)
    mask = torch.rand(2, 13, generator=torch.Generator().manual_seed(3)) > 0.3 if masked else None
    torch.testing.assert_close(linear_attention(q, k, v, mask), brute_force(q, k, v, mask))
    torch.testing.assert_close(linear_attention(q, k, v, mask, normalize=False), brute_force(q, k, v, mask, normalize=False))


@pytest.mark.parametrize("chunk", [1, 4, 5, 13, 64])
@pytest.mark.parametrize("masked", [False, True])
def test_chunked_causal_matches_brute_force_and_prefix_sum(chunk, masked):
    q, k, v = features(2, 3, 13, 4)
    mask = torch.rand(2, 13, generator=torch.Generator().manual_seed(4)) > 0.3 if masked else None
    expected = brute_force(q, k, v, mask, causal=True)
    torch.testing.assert_close(causal_linear_attention(q, k, v, mask, chunk_size=chunk), expected)
    if mask is None:
        torch.testing.assert_close(causal_linear_attention_prefix_sum(q, k, v), expected)


def test_recurrent_steps_equal_chunked_and_carry_state():
    q, k, v = features(2, 3, 17, 4)
    chunked, (s_final, z_final) = causal_linear_attention(q, k, v, chunk_size=5, return_state=True)
    state, steps = None, []
    for t in range(17):
        out, state = linear_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], state)
        steps.append(out)
    torch.testing.assert_close(torch.stack(steps, 2), chunked)
    torch.testing.assert_close(state[0], s_final)
    torch.testing.assert_close(state[1], z_final)
    # a split sequence continues from the carried state
    first, carried = causal_linear_attention(q[:, :, :8], k[:, :, :8], v[:, :, :8], chunk_size=3, return_state=True)
    second = causal_linear_attention(q[:, :, 8:], k[:, :, 8:], v[:, :, 8:], chunk_size=3, initial_state=carried)
    torch.testing.assert_close(torch.cat([first, second], 2), chunked)


def test_gradients_of_chunked_match_brute_force():
    q, k, v = (t.requires_grad_(True) for t in features(1, 2, 11, 3))
    causal_linear_attention(q, k, v, chunk_size=4).pow(2).sum().backward()
    grads = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    brute_force(q, k, v, causal=True).pow(2).sum().backward()
    for got, t in zip(grads, (q, k, v)):
        torch.testing.assert_close(got, t.grad)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("chunk", [3, 5, 16])
def test_chunked_causal_with_padding_and_carried_state_matches_brute_force_values_and_gradients(normalize, chunk):
    """Masked keys, a sequence split in two with the state carried over, values and every gradient (float64)."""
    q, k, v = (t.requires_grad_(True) for t in features(2, 2, 14, 4, seed=7))
    mask = torch.rand(2, 14, generator=torch.Generator().manual_seed(8)) > 0.3
    upstream = torch.randn(2, 2, 14, 5, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    results = []
    for fn in ("chunked", "brute"):
        if fn == "brute":
            out = brute_force(q, k, v, mask, causal=True, normalize=normalize)
        else:
            parts, state = [], None
            for span in (slice(0, 6), slice(6, 14)):
                part, state = causal_linear_attention(q[:, :, span], k[:, :, span], v[:, :, span], mask[:, span],
                                                      chunk_size=chunk, initial_state=state, return_state=True,
                                                      normalize=normalize)
                parts.append(part)
            out = torch.cat(parts, dim=2)
        (out * upstream).sum().backward()
        results.append((out.detach(), [t.grad.clone() for t in (q, k, v)]))
        for t in (q, k, v):
            t.grad = None
    (out, grads), (expected, expected_grads) = results
    torch.testing.assert_close(out, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)
    real_k = k.detach() * mask[:, None, :, None]
    torch.testing.assert_close(state[0], real_k.transpose(-1, -2) @ v.detach())
    torch.testing.assert_close(state[1], real_k.sum(dim=-2))


def test_float32_inputs_accumulate_in_float32_and_stay_close_to_float64():
    q, k, v = features(1, 2, 300, 8)
    expected = brute_force(q[:, :, :40], k[:, :, :40], v[:, :, :40], causal=True)
    out = causal_linear_attention(q.float()[:, :, :40], k.float()[:, :, :40], v.float()[:, :, :40], chunk_size=16)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)


def _module_qkv(m, x):
    q = m.split_heads(m.q_proj(x))
    k = m.split_heads(m.k_proj(x))
    v = m.split_heads(m.v_proj(x))
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
def test_linear_module_matches_brute_force(causal):
    torch.manual_seed(0)
    m = core.build_attention("linear", 12, 3, causal=causal, chunk_size=4).double()
    x = torch.randn(2, 10, 12, dtype=torch.float64)
    q, k, v = _module_qkv(m, x)
    heads = brute_force(elu_feature_map(q), elu_feature_map(k), v, causal=causal)
    expected = m.out_proj(heads.transpose(1, 2).reshape(2, 10, 12))
    torch.testing.assert_close(m(x), expected)


@pytest.mark.parametrize("causal", [False, True])
def test_cosine_module_matches_brute_force(causal):
    torch.manual_seed(0)
    m = core.build_attention("cosine", 12, 3, causal=causal).double()
    x = torch.randn(2, 10, 12, dtype=torch.float64)
    q, k, v = _module_qkv(m, x)
    raw = brute_force(F.normalize(q, dim=-1), F.normalize(k, dim=-1), v, causal=causal, normalize=False)
    seen = torch.arange(1, 11, dtype=torch.float64)[:, None] if causal else torch.tensor(10.0, dtype=torch.float64)
    heads = raw / seen.sqrt()
    torch.testing.assert_close(m(x), m.out_proj(heads.transpose(1, 2).reshape(2, 10, 12)))


def test_efficient_module_matches_explicit_formula():
    torch.manual_seed(0)
    m = core.build_attention("efficient", 12, 3).double()
    x = torch.randn(2, 10, 12, dtype=torch.float64)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    q, k, v = _module_qkv(m, x)
    heads = torch.zeros_like(q)
    for b in range(2):
        real = mask[b]
        kb = torch.softmax(k[b][:, real], dim=-2)  # over real keys only
        heads[b] = torch.softmax(q[b], dim=-1) @ (kb.transpose(-1, -2) @ v[b][:, real])
    expected = m.out_proj(heads.transpose(1, 2).reshape(2, 10, 12))
    torch.testing.assert_close(m(x, mask)[0], expected[0])
    torch.testing.assert_close(m(x, mask)[1, :6], expected[1, :6])


def test_normalised_attention_matrix_rows_sum_to_one():
    m = core.build_attention("linear", 12, 3, causal=True).double()
    a = m.attention_matrix(torch.randn(2, 7, 12, dtype=torch.float64))
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 3, 7, dtype=torch.float64), rtol=1e-5, atol=1e-5)
    assert (a.triu(1) == 0).all()
