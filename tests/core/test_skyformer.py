"""Kernelized (exact Gaussian-kernel) attention and Skyformer against explicit float64 transcriptions."""

import pytest
import torch

import core
from core.ops.gaussian import kernelized_attention, reference_kernelized_attention
from core.ops.sampling import real_token_positions
from core.ops.skyformer import (
    packed_skyformer_attention,
    reference_skyformer_attention,
    skyformer_attention,
    skyformer_landmarks,
)


def qkv(b=2, h=2, n=19, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for _ in range(3)]


def explicit_gaussian_attention(q, k, v, mask=None, causal=False):
    """exp(-|q - k|^2 / (2 sqrt(d))) v written with cdist, zero weight on padded keys and on j > i."""
    d = q.shape[-1]
    weights = torch.exp(-torch.cdist(q, k).pow(2) / (2 * d**0.5))
    if mask is not None:
        weights = weights * mask[:, None, None, :]
    if causal:
        weights = weights.tril()
    return weights @ v


def non_prefix_mask(b, n):
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, 3] = mask[0, 10] = False
    mask[1, 12:] = False
    return mask


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_kernelized_sdpa_path_matches_explicit_formula_and_gradients(causal, masked):
    q, k, v = (t.requires_grad_(True) for t in qkv())
    mask = non_prefix_mask(2, 19) if masked else None
    fast = kernelized_attention(q, k, v, mask, causal)
    expected = explicit_gaussian_attention(q, k, v, mask, causal)
    torch.testing.assert_close(fast, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(reference_kernelized_attention(q, k, v, mask, causal), expected)
    grads = torch.autograd.grad(fast.pow(2).sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.pow(2).sum(), (q, k, v))
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-11)
    if masked:
        assert (grads[1][0, :, 3] == 0).all() and (grads[1][1, :, 12:] == 0).all()


def test_kernelized_module_matches_explicit_formula():
    torch.manual_seed(0)
    m = core.build_attention("kernelized", 16, 2).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    q, k, v = m.project_qkv(x)
    heads = explicit_gaussian_attention(q, k, v).transpose(1, 2).reshape(2, 11, 16)
    torch.testing.assert_close(m(x), m.out_proj(heads))
    torch.testing.assert_close(m.attention_matrix(x) @ v, explicit_gaussian_attention(q, k, v))


def test_stratified_positions_take_every_real_token_once_and_random_ones_stay_real():
    mask = non_prefix_mask(2, 19)
    every = real_token_positions(mask, 2, 19, 17, random=False)
    assert every[0].tolist() == [i for i in range(19) if i not in (3, 10)]
    drawn = real_token_positions(mask, 2, 19, 500, random=True, generator=torch.Generator().manual_seed(0))
    assert mask.gather(1, drawn).all()
    assert set(drawn[1].tolist()) == set(range(12))
    assert real_token_positions(None, 1, 10, 5, random=False).tolist() == [[1, 3, 5, 7, 9]]


@pytest.mark.parametrize("masked", [False, True])
def test_skyformer_equals_the_lifted_nystrom_transcription(masked):
    """Fast path (exact solve) == B S (S^T B S + gamma I)^{-1} S^T B of the paper, off-diagonal block, times V."""
    q, k, v = qkv(n=23, seed=2)
    mask = non_prefix_mask(2, 23) if masked else None
    g = torch.Generator().manual_seed(5)
    qpos = real_token_positions(mask, 2, 23, 6, random=True, generator=g)
    kpos = real_token_positions(mask, 2, 23, 5, random=True, generator=g)
    expected = reference_skyformer_attention(q, k, v, qpos, kpos, mask, ridge=0.05)
    landmarks = skyformer_landmarks(q, k, qpos, kpos)
    exact = skyformer_attention(q, k, v, landmarks, mask, ridge=0.05, inverse="solve")
    torch.testing.assert_close(exact, expected, rtol=1e-10, atol=1e-12)
    iterative = skyformer_attention(q, k, v, landmarks, mask, ridge=0.05, iterations=40)
    torch.testing.assert_close(iterative, expected, rtol=1e-8, atol=1e-10)
    six = skyformer_attention(q, k, v, landmarks, mask, ridge=0.05, iterations=6)
    assert (six - expected).abs().max() > 1e-6  # the default iteration count is an approximation


def test_skyformer_converges_to_kernelized_as_landmarks_grow():
    """With every query and key as a landmark and gamma -> 0 the Nystrom approximation is exact."""
    n = 32
    errors = []
    for m in (8, 16, 32, 2 * n):
        torch.manual_seed(0)  # the same projections for every m
        sky = core.build_attention("skyformer", 16, 2, num_landmarks=m, ridge=1e-10, inverse="solve").double().eval()
        exact = core.build_attention("kernelized", 16, 2).double()
        exact.load_state_dict(sky.state_dict())
        x = torch.randn(2, n, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        mask = torch.ones(2, n, dtype=torch.bool)
        reference = exact(x, key_padding_mask=mask)
        errors.append(((sky(x, key_padding_mask=mask) - reference).norm() / reference.norm()).item())
    assert errors == sorted(errors, reverse=True), errors
    assert errors[0] > 1e-3 and errors[-1] < 1e-8, errors


def test_default_skyformer_approximates_kernelized():
    """m = 128, gamma = 0.1, six iterations on N = 256: a sanity bound that a wrong kernel or inverse breaks."""
    torch.manual_seed(0)
    sky = core.build_attention("skyformer", 32, 4).double().eval()
    exact = core.build_attention("kernelized", 32, 4).double()
    exact.load_state_dict(sky.state_dict())
    x = torch.randn(1, 256, 32, dtype=torch.float64)
    q, k, v = sky.project_qkv(x)
    approx = sky.attend(q, k, v, None, x)
    reference = exact.attend(q, k, v, None, x)
    assert ((approx - reference).norm() / reference.norm()) < 0.06  # measured 0.028; m = 16 gives 0.13


def test_skyformer_ignores_padding_anywhere_in_eval_mode():
    """Real tokens' outputs equal the run on the compacted real tokens, for a padding pattern that is no suffix."""
    torch.manual_seed(0)
    sky = core.build_attention("skyformer", 16, 2, num_landmarks=8).double().eval()
    x = torch.randn(2, 19, 16, dtype=torch.float64)
    mask = non_prefix_mask(2, 19)
    out = sky(x, key_padding_mask=mask)
    for i in range(2):
        alone = sky(x[i : i + 1, mask[i]])
        torch.testing.assert_close(out[i : i + 1, mask[i]], alone, rtol=1e-10, atol=1e-12)


def test_skyformer_training_draws_new_landmarks_and_stays_finite():
    torch.manual_seed(0)
    sky = core.build_attention("skyformer", 16, 2, num_landmarks=8).train()
    x = torch.randn(2, 40, 16)
    first, second = sky(x), sky(x)
    assert torch.isfinite(first).all() and not torch.allclose(first, second)
    sky.eval()
    torch.testing.assert_close(sky(x), sky(x), rtol=0, atol=0)


def test_skyformer_refuses_causal_and_bad_options():
    with pytest.raises(ValueError, match="no causal form"):
        core.build_attention("skyformer", 16, 2, causal=True)
    with pytest.raises(ValueError, match="inverse"):
        core.build_attention("skyformer", 16, 2, inverse="qr")
    with pytest.raises(ValueError, match="num_landmarks"):
        core.build_attention("skyformer", 16, 2, num_landmarks=1)


@pytest.mark.parametrize("short_side", ["keys", "queries"])
def test_chunked_kernel_product_matches_explicit_and_gradchecks(short_side, monkeypatch):
    import core.ops.kernel_product as kernel_product
    from core.ops.gaussian import gaussian_kernel

    monkeypatch.setattr(kernel_product, "_CHUNK_ELEMENTS", 40)  # several chunks
    g = torch.Generator().manual_seed(0)
    na, nb = (23, 5) if short_side == "keys" else (5, 23)
    a, b = (torch.randn(2, 2, n, 4, generator=g, dtype=torch.float64, requires_grad=True) for n in (na, nb))
    v = torch.randn(2, 2, nb, 3, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(2, nb, generator=g) > 0.3
    out = kernel_product.gaussian_kernel_product(a, b, v, 0.7, mask)
    torch.testing.assert_close(out, (gaussian_kernel(a, b, 0.7) * mask[:, None, None, :]) @ v)
    assert torch.autograd.gradcheck(lambda a, b, v: kernel_product.gaussian_kernel_product(a, b, v, 0.7, mask), (a, b, v))


def relative_rms(got, want):
    return ((got - want).pow(2).mean().sqrt() / want.pow(2).mean().sqrt()).item()


@pytest.mark.parametrize("inverse", ["newton_schulz", "solve"])
@pytest.mark.parametrize("masked", [False, True])
def test_packed_skyformer_equals_the_reference_path_values_and_gradients(masked, inverse, monkeypatch):
    """Packed fast path == skyformer_attention on unpacked heads, over several chunks, with repeated landmarks."""
    import core.ops.skyformer as skyformer

    monkeypatch.setattr(skyformer, "_CHUNK_ELEMENTS", 60)  # chunks of 3 rows
    b, n, h, d = 2, 23, 2, 4
    g = torch.Generator().manual_seed(3)
    qkv = torch.randn(b, n, 3 * h * d, generator=g, dtype=torch.float64, requires_grad=True)
    mask = non_prefix_mask(b, n) if masked else None
    draw = real_token_positions(mask, b, n, 9, random=True, generator=g)  # with replacement: repeats occur
    qpos, kpos = draw[:, :5], draw[:, 5:]
    options = dict(ridge=0.05, iterations=4, inverse=inverse, scale=0.6)
    weights = torch.randn(b, n, h * d, generator=g, dtype=torch.float64)

    fast = packed_skyformer_attention(qkv, h, qpos, kpos, mask, **options)
    q, k, v = qkv.view(b, n, 3, h, d).unbind(2)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    heads = skyformer_attention(q, k, v, skyformer_landmarks(q, k, qpos, kpos), mask, **options)
    expected = heads.transpose(1, 2).reshape(b, n, h * d)
    torch.testing.assert_close(fast, expected, rtol=1e-12, atol=1e-13)
    (grad,) = torch.autograd.grad((fast * weights).sum(), qkv)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), qkv)
    assert relative_rms(grad, expected_grad) < 1e-12
    if masked:  # padded keys and their values get no gradient (landmarks are real tokens)
        keys_values = grad.view(b, n, 3, h, d)[:, :, 1:]
        assert (keys_values[~mask] == 0).all()


def test_packed_skyformer_gradcheck(monkeypatch):
    import core.ops.skyformer as skyformer

    monkeypatch.setattr(skyformer, "_CHUNK_ELEMENTS", 20)
    g = torch.Generator().manual_seed(0)
    qkv = torch.randn(2, 11, 3 * 2 * 3, generator=g, dtype=torch.float64, requires_grad=True)
    qpos, kpos = torch.tensor([[0, 4, 4], [2, 9, 1]]), torch.tensor([[3, 3], [7, 0]])
    mask = torch.ones(2, 11, dtype=torch.bool)
    mask[0, 5:7] = mask[1, 10] = False
    for m in (None, mask):
        assert torch.autograd.gradcheck(
            lambda t, m=m: packed_skyformer_attention(t, 2, qpos, kpos, m, ridge=0.3, iterations=3), (qkv,)
        )


@pytest.mark.parametrize("training", [False, True])
def test_skyformer_module_forward_equals_its_attend_path(training):
    """forward (packed projections, fast path) == out_proj(merge(attend(project_qkv(x)))), values and gradients."""
    torch.manual_seed(0)
    sky = core.build_attention("skyformer", 16, 2, num_landmarks=8).double().train(training)
    x = torch.randn(2, 19, 16, dtype=torch.float64, requires_grad=True)
    mask = non_prefix_mask(2, 19)
    weights = torch.randn(2, 19, 16, dtype=torch.float64)
    torch.manual_seed(1)  # the same random landmarks in training mode
    fast = sky(x, key_padding_mask=mask)
    torch.manual_seed(1)
    q, k, v = sky.project_qkv(x)
    expected = sky.out_proj(sky.merge_heads(sky.attend(q, k, v, mask, x)))
    torch.testing.assert_close(fast, expected, rtol=1e-12, atol=1e-13)
    inputs = [x, *sky.parameters()]
    grads = torch.autograd.grad((fast * weights).sum(), inputs)
    expected_grads = torch.autograd.grad((expected * weights).sum(), inputs)
    for got, want in zip(grads, expected_grads):
        assert relative_rms(got, want) < 1e-12


def test_skyformer_module_backward_twice_through_a_retained_graph():
    torch.manual_seed(0)
    sky = core.build_attention("skyformer", 16, 2, num_landmarks=8).double().eval()
    x = torch.randn(2, 19, 16, dtype=torch.float64, requires_grad=True)
    loss = sky(x).pow(2).sum()
    loss.backward(retain_graph=True)
    once = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * once, rtol=1e-12, atol=0)
