"""The one-node chunked causal product: running sums, values, final states and every gradient against explicit
prefix sums in float64 (long sequences through a small scan block, so the blocked running sums are exercised)."""

import pytest
import torch

from core.ops import chunked_causal
from core.ops.chunked_causal import _exclusive_sums, chunked_causal_product


def _inputs(b, h, n, f, dv, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(b, h, n, f, generator=g, dtype=torch.float64) + 0.1
    k = torch.rand(b, h, n, f, generator=g, dtype=torch.float64) + 0.1
    v = torch.randn(b, h, n, dv, generator=g, dtype=torch.float64)
    return q, k, v


def prefix_reference(q, k, v, state=None, normalize=True, eps=1e-6):
    """Token by token: ``S_i = S_0 + sum_{j <= i} k_j [v_j, 1]^T``, ``num_i = q_i S_i`` (explicit loop)."""
    b, h, n, f = q.shape
    ones = torch.ones(b, h, n, 1, dtype=v.dtype)
    joined = torch.cat([v, ones], -1) if normalize else v
    running = torch.zeros(b, h, f, joined.shape[-1], dtype=v.dtype) if state is None else state
    rows = []
    for i in range(n):
        running = running + k[:, :, i, :, None] * joined[:, :, i, None, :]
        num = (q[:, :, i, :, None] * running).sum(-2)
        rows.append(num[..., :-1] / (num[..., -1:] + eps) if normalize else num)
    return torch.stack(rows, 2), running


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("nc", [1, 3, 4, 9, 17, 70])
def test_exclusive_sums_match_cumulative_sums(monkeypatch, reverse, nc):
    monkeypatch.setattr(chunked_causal, "SCAN_BLOCK", 4)  # 70 chunks: three levels of blocks
    x = torch.randn(2, nc, 5, dtype=torch.float64)
    inclusive = x.flip(1).cumsum(1).flip(1) if reverse else x.cumsum(1)
    torch.testing.assert_close(_exclusive_sums(x, reverse), inclusive - x)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("n, chunk", [(23, 3), (24, 4), (5, 8)])
def test_values_final_state_and_gradients_match_the_prefix_reference(monkeypatch, normalize, n, chunk):
    monkeypatch.setattr(chunked_causal, "SCAN_BLOCK", 2)
    q, k, v = _inputs(2, 3, n, 4, 3, seed=n)
    w = 4 if normalize else 3
    state = torch.rand(2, 3, 4, w, dtype=torch.float64) + 0.1
    leaves = [t.requires_grad_(True) for t in (q, k, v, state)]
    g = torch.Generator().manual_seed(1)
    up_out = torch.randn(2, 3, n, 3, generator=g, dtype=torch.float64)
    up_state = torch.randn(2, 3, 4, w, generator=g, dtype=torch.float64)
    results = []
    for fn in (lambda: chunked_causal_product(q, k, v, state, 1e-6, normalize, chunk),
               lambda: prefix_reference(q, k, v, state, normalize)):
        out, final = fn()
        ((out * up_out).sum() + (final * up_state).sum()).backward()
        results.append([out.detach(), final.detach()] + [t.grad.clone() for t in leaves])
        for t in leaves:
            t.grad = None
    for got, want in zip(*results):
        torch.testing.assert_close(got, want)


def test_gradients_when_only_the_final_state_is_used():
    q, k, v = (t.requires_grad_(True) for t in _inputs(1, 2, 10, 3, 2, seed=3))
    chunked_causal_product(q, k, v, chunk_size=4)[1].pow(2).sum().backward()
    got = [t.grad.clone() for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    prefix_reference(q, k, v)[1].pow(2).sum().backward()
    assert q.grad is None and got[0].abs().max() == 0  # the final state does not depend on the queries
    for a, t in zip(got[1:], (k, v)):
        torch.testing.assert_close(a, t.grad)


def test_gradcheck_with_carried_state():
    q, k, v = (t.requires_grad_(True) for t in _inputs(1, 2, 7, 3, 2, seed=5))
    state = (torch.rand(1, 2, 3, 3, dtype=torch.float64) + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *a: chunked_causal_product(*a, 1e-6, True, 3), (q, k, v, state))


def test_outputs_may_be_changed_in_place_and_a_change_needed_by_backward_is_caught():
    q, k, v = (t.requires_grad_(True) for t in _inputs(1, 2, 8, 2, 2))
    raw, final = chunked_causal_product(q, k, v, normalize=False, chunk_size=4)  # backward needs neither
    want = torch.autograd.grad((2 * raw).sum() + final.sum(), (q, k, v))
    raw, final = chunked_causal_product(q, k, v, normalize=False, chunk_size=4)
    raw.mul_(2)
    for got, expected in zip(torch.autograd.grad(raw.sum() + final.sum(), (q, k, v)), want):
        torch.testing.assert_close(got, expected)
    out, _ = chunked_causal_product(q, k, v, chunk_size=4)  # the normalised output is kept for backward
    out.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_a_chunk_size_below_one_is_refused():
    q, k, v = _inputs(1, 1, 4, 2, 2)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        chunked_causal_product(q, k, v, chunk_size=0)


def test_second_derivatives_are_refused_rather_than_wrong():
    q, k, v = (t.requires_grad_(True) for t in _inputs(1, 1, 6, 2, 2))
    out, _ = chunked_causal_product(q, k, v, chunk_size=4)
    (grad_q,) = torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad_q.sum().backward()
