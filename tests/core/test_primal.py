"""Primal-Attention against a direct float64 transcription of the formulas (Chen et al., NeurIPS 2023)."""

import pytest
import torch

import core
from core.ops.primal import evenly_spaced_positions, ksvd_objective


def transcription(m, x, causal):
    """Per head h: e = phi(q) W_e, r = phi(k) W_r, out = Linear_{2s->p}([e, r]); written loop by loop."""
    b, n, d = x.shape
    h, p, s = m.num_heads, m.head_dim, m.low_rank
    q = x @ m.q_proj.weight.T + m.q_proj.bias
    k = x @ m.k_proj.weight.T + m.k_proj.bias
    heads, es, rs = [], [], []
    for hh in range(h):
        qh, kh = q[:, :, hh * p : (hh + 1) * p], k[:, :, hh * p : (hh + 1) * p]
        if causal:
            steps = torch.arange(1, n + 1, dtype=x.dtype)[None, :, None]
            qh, kh = qh.cumsum(1) / steps, kh.cumsum(1) / steps
            we, wr = m.weight_e[hh].expand(b, p, s), m.weight_r[hh].expand(b, p, s)
        else:
            idx = torch.linspace(0, n - 1, m.num_samples, dtype=torch.long)  # official sampling
            xs = x[:, idx, hh * p : (hh + 1) * p]  # (B, n, p)
            we = xs.transpose(1, 2) @ m.weight_e[hh]
            wr = xs.transpose(1, 2) @ m.weight_r[hh]
        e = (qh / qh.norm(dim=-1, keepdim=True)) @ we
        r = (kh / kh.norm(dim=-1, keepdim=True)) @ wr
        es.append(e)
        rs.append(r)
        heads.append(torch.cat([e, r], -1) @ m.score_proj.weight.T + m.score_proj.bias)
    out = torch.cat(heads, -1) @ m.out_proj.weight.T + m.out_proj.bias
    return out, torch.stack(es, 1), torch.stack(rs, 1)


def ksvd_transcription(m, e, r):
    """Per sample: E = mean_{h,n} 1/2 ||e diag(lambda_h)||^2 (likewise R), T = mean_h Tr(W_e^T W_r);
    loss = mean_b (E + R - T)^2."""
    lam = torch.diag_embed(m.lambdas)  # (H, s, s)
    energy_e = 0.5 * (e @ lam[None]).pow(2).sum(-1).mean(dim=(1, 2))
    energy_r = 0.5 * (r @ lam[None]).pow(2).sum(-1).mean(dim=(1, 2))
    trace = torch.stack([torch.trace(m.weight_e[h].T @ m.weight_r[h]) for h in range(m.num_heads)]).mean()
    return ((energy_e + energy_r - trace) ** 2).mean()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("n", [7, 30])
@pytest.mark.parametrize("low_rank", [3, 8])  # folded head maps (3), or not (8: as many multiply-adds per token)
def test_forward_and_ksvd_match_transcription(causal, n, low_rank):
    torch.manual_seed(0)
    m = core.build_attention("primal", 16, 2, causal=causal, low_rank=low_rank, rank_multi=4).double()
    x = torch.randn(3, n, 16, dtype=torch.float64)
    expected, e, r = transcription(m, x, causal)
    torch.testing.assert_close(m(x), expected)
    torch.testing.assert_close(core.ksvd_loss(m), ksvd_transcription(m, e, r))
    assert core.ksvd_loss(m) == 0  # consumed


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("low_rank", [3, 8])  # head maps folded into one matrix (3), or applied one after the other
def test_gradients_match_autograd_of_the_transcription(causal, low_rank):
    """Gradients of the input and of every parameter (through the sampled tokens of W_{.|X} too)."""
    torch.manual_seed(1)
    m = core.build_attention("primal", 16, 2, causal=causal, low_rank=low_rank, rank_multi=4).double()
    x = torch.randn(3, 11, 16, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(3, 11, 16, dtype=torch.float64)
    params = [x, *m.parameters()]
    loss = (m(x) * probe).sum() + core.ksvd_loss(m)
    fast = torch.autograd.grad(loss, params)
    expected, e, r = transcription(m, x, causal)
    reference = torch.autograd.grad((expected * probe).sum() + ksvd_transcription(m, e, r), params)
    for got, want in zip(fast, reference):
        torch.testing.assert_close(got, want)


def test_ksvd_loss_on_a_hand_sized_example():
    """One head, s = 1, one sample: E = 1/2 mean_n (lambda e_n)^2, etc., computed by hand."""
    e = torch.tensor([[[[1.0]], [[3.0]]]], dtype=torch.float64)  # (B=1, N=2, H=1, s=1)
    r = torch.tensor([[[[2.0]], [[0.0]]]], dtype=torch.float64)
    lam = torch.tensor([[0.5]], dtype=torch.float64)
    from core.ops.primal import ksvd_energy, ksvd_trace

    energy_e = ksvd_energy(e, lam)  # 1/2 * mean(0.25, 2.25) = 0.625
    energy_r = ksvd_energy(r, lam)  # 1/2 * mean(1.0, 0) = 0.25
    torch.testing.assert_close(energy_e, torch.tensor([0.625], dtype=torch.float64))
    torch.testing.assert_close(energy_r, torch.tensor([0.25], dtype=torch.float64))
    w_e = torch.tensor([[[1.0], [2.0]]], dtype=torch.float64)  # (H=1, n=2, s=1)
    w_r = torch.tensor([[[0.5], [0.25]]], dtype=torch.float64)
    trace = ksvd_trace(w_e, w_r)  # 1*0.5 + 2*0.25 = 1.0
    torch.testing.assert_close(trace, torch.tensor(1.0, dtype=torch.float64))
    loss = ksvd_objective(energy_e, energy_r, trace, "sample")  # (0.625 + 0.25 - 1)^2 = 0.015625
    torch.testing.assert_close(loss, torch.tensor(0.015625, dtype=torch.float64))


def test_batch_reduction_squares_the_batch_mean():
    energy_e = torch.tensor([1.0, 3.0], dtype=torch.float64)
    energy_r = torch.tensor([0.0, 2.0], dtype=torch.float64)
    trace = torch.tensor(1.0, dtype=torch.float64)
    torch.testing.assert_close(ksvd_objective(energy_e, energy_r, trace, "batch"), torch.tensor(4.0, dtype=torch.float64))
    torch.testing.assert_close(ksvd_objective(energy_e, energy_r, trace, "sample"), torch.tensor(8.0, dtype=torch.float64))


def test_dual_encoder_passes_average_energies_before_squaring():
    torch.manual_seed(0)
    m = core.build_attention("primal", 16, 2, low_rank=3, rank_multi=2).double()
    x0, x1 = torch.randn(2, 9, 16, dtype=torch.float64), torch.randn(2, 9, 16, dtype=torch.float64)
    _, e0, r0 = transcription(m, x0, False)
    _, e1, r1 = transcription(m, x1, False)
    m(x0)
    m(x1)
    lam = m.lambdas[None, :, None, :]
    energy = lambda t: 0.5 * (t * lam).pow(2).sum(-1).mean(dim=(1, 2))  # noqa: E731
    trace = (m.weight_e * m.weight_r).sum(dim=(1, 2)).mean()
    expected = ((energy(e0) + energy(e1)) / 2 + (energy(r0) + energy(r1)) / 2 - trace).pow(2).mean()
    torch.testing.assert_close(core.ksvd_loss(m), expected)


def test_max_seq_len_caps_samples_and_parameters_follow_the_paper():
    m = core.build_attention("primal", 64, 8, low_rank=40, rank_multi=5, max_seq_len=29)
    assert m.weight_e.shape == (8, 29, 40) and m.lambdas.shape == (8, 40)
    assert m.score_proj.in_features == 80 and m.score_proj.out_features == 8
    assert m.v_proj is None
    c = core.build_attention("primal", 64, 8, causal=True, low_rank=30)
    assert c.weight_e.shape == (8, 8, 30)
    flat = m.weight_e.detach().reshape(8, -1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(8), atol=1e-5, rtol=0)  # orthogonal_ on the 3-d tensor
    assert (m.lambdas >= 0).all() and (m.lambdas <= 1).all()


def test_masked_sampling_uses_only_real_tokens_and_original_mode_ignores_the_mask():
    mask = torch.tensor([[True] * 10, [False, False] + [True] * 5 + [False] * 3])
    positions = evenly_spaced_positions(4, 10, mask, batch=2)
    assert positions[0].tolist() == torch.linspace(0, 9, 4, dtype=torch.long).tolist()
    assert positions[1].tolist() == [2, 3, 4, 6]
    torch.manual_seed(0)
    original = core.build_attention("primal", 16, 2, low_rank=2, rank_multi=2, original_padding=True).double()
    x = torch.randn(1, 10, 16, dtype=torch.float64)
    noisy = x.clone()
    noisy[:, 7:] = 9.0
    pad = torch.tensor([[True] * 7 + [False] * 3])
    # the official code lets padding leak into real tokens; the flag reproduces that
    assert not torch.allclose(original(x, pad)[:, :7], original(noisy, pad)[:, :7])


@pytest.mark.parametrize("per_sample", [True, False])
def test_memory_lean_cosine_scores_match_autograd_of_the_formula(per_sample):
    from core.ops.primal import cosine_scores

    g = torch.Generator().manual_seed(0)
    q = torch.randn(2, 5, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)  # (B, N, H, p)
    shape = (2, 3, 4, 6) if per_sample else (3, 4, 6)
    w = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cosine_scores, (q, w))
    from core.ops.primal import ksvd_energy

    lam = torch.rand(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    assert torch.autograd.gradcheck(lambda a, b: ksvd_energy(a, b, mask), (q, lam))
    direct = torch.matmul(torch.nn.functional.normalize(q, dim=-1).transpose(1, 2), w).transpose(1, 2)
    torch.testing.assert_close(cosine_scores(q, w), direct)


def test_projected_cosine_scores_gradients():
    from core.ops.primal import _ProjectedCosineScores

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    qw, kw = (torch.randn(6, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    qb, kb = (torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(2))
    w_e = torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w_r = torch.randn(3, 2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    for save_projections in (False, True):
        assert torch.autograd.gradcheck(
            lambda *t, save=save_projections: _ProjectedCosineScores.apply(*t, 3, save), (x, qw, qb, w_e, kw, kb, w_r)
        )


def test_autocast_forward_and_backward_follow_the_float32_layer():
    """Under (CPU bfloat16) autocast the fused score function runs in float32; gradients reach every parameter."""
    torch.manual_seed(2)
    m = core.build_attention("primal", 32, 4, low_rank=4, rank_multi=2)
    x = torch.randn(2, 9, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
        loss = y.float().pow(2).mean() + core.ksvd_loss(m)
    loss.backward()
    reference = m(x.detach()).pow(2).mean() + core.ksvd_loss(m)
    assert torch.allclose(loss.detach(), reference.detach(), rtol=0.05)
    assert x.grad is not None and all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
