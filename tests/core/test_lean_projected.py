"""The four projections fused with the lean random-feature op, against separate linear maps and stored feature maps
(float64)."""

import pytest
import torch
import torch.nn.functional as F

from core import build_attention
from core.ops import lean_projected
from core.ops.lean_projected import projected_lean_attention
from core.ops.random_features import positive_attention_features, random_feature_attention

B, N, H, D, M, D_OUT = 3, 23, 2, 8, 6, 5


def _reference(x, proj_weight, proj_bias, out_weight, out_bias, omega, a, mask, scale, kernel):
    """Four linear maps around stored feature maps (plain autograd), heads split and merged."""
    q, k, v = (F.linear(x, w, b).unflatten(-1, (H, -1)).transpose(1, 2)
               for w, b in zip(proj_weight.chunk(3), proj_bias.chunk(3) if proj_bias is not None else [None] * 3))
    qf, kf = positive_attention_features(q, k, omega, a, kernel, mask, input_scale=scale)
    return F.linear(random_feature_attention(qf, kf, v, mask).transpose(1, 2).flatten(-2), out_weight, out_bias)


def _fused(x, proj_weight, proj_bias, out_weight, out_bias, omega, a, mask, scale, kernel, chunk):
    if a is None:
        weight, bias = scale * omega, None
    else:
        weight, bias = (1 - 4 * a).sqrt() * scale * omega, a * omega.pow(2).sum(-1).unsqueeze(-2)
    kappa = scale**2 / 2 if kernel == "softmax" else scale**2
    return projected_lean_attention(x, proj_weight, proj_bias, out_weight, out_bias, weight, bias, mask, H, kappa,
                                    chunk_size=chunk)


def _leaves(gen, with_bias, with_a):
    """x, the stacked q/k/v map and bias, the output map (to D_OUT != D) and bias, omega, A."""
    x = torch.randn(B, N, D, generator=gen, dtype=torch.float64)
    proj_weight = torch.randn(3 * D, D, generator=gen, dtype=torch.float64) / D**0.5
    proj_bias = torch.randn(3 * D, generator=gen, dtype=torch.float64) * 0.3 if with_bias else None
    out_weight = torch.randn(D_OUT, D, generator=gen, dtype=torch.float64) / D**0.5
    out_bias = torch.randn(D_OUT, generator=gen, dtype=torch.float64) if with_bias else None
    omega = torch.randn(H, M, D // H, generator=gen, dtype=torch.float64)
    a = torch.rand(1, H, 1, 1, generator=gen, dtype=torch.float64) * -0.3 if with_a else None
    return [x, proj_weight, proj_bias, out_weight, out_bias, omega, a]


def _mask():
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 15:] = False  # trailing padding
    mask[2, :11] = False  # leading padding: the first chunks hold no real key
    return mask


@pytest.mark.parametrize("kernel", ["softmax", "gaussian"])
@pytest.mark.parametrize("with_bias,with_a", [(True, False), (False, True)])
@pytest.mark.parametrize("chunk", [5, 64])
@pytest.mark.parametrize("masked", [False, True])
def test_values_and_every_gradient_match_separate_nodes(kernel, with_bias, with_a, chunk, masked):
    """Several chunks (5) and one (64), padding anywhere: output and the gradients of x, the stacked projection
    weight and bias, the output map and bias, omega and A equal plain autograd through stored features."""
    gen = torch.Generator().manual_seed(7)
    leaves = _leaves(gen, with_bias, with_a)
    mask = _mask() if masked else None
    upstream = torch.randn(B, N, D_OUT, generator=gen, dtype=torch.float64)
    results = []
    for fused in (False, True):
        inputs = [None if t is None else t.clone().requires_grad_(True) for t in leaves]
        args = (*inputs, mask, (D // H) ** -0.25, kernel)
        out = _fused(*args, chunk) if fused else _reference(*args)
        (out * upstream).sum().backward()
        results.append((out.detach(), [None if t is None else t.grad for t in inputs]))
    (out_ref, grads_ref), (out, grads) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    for grad, grad_ref in zip(grads, grads_ref):
        if grad_ref is None:
            assert grad is None
        else:
            torch.testing.assert_close(grad, grad_ref, rtol=1e-8, atol=1e-10)


def test_frozen_projections_and_constant_input_still_train_the_feature_rows():
    """Only omega and A require gradients: no projection gradient is built, theirs still match."""
    gen = torch.Generator().manual_seed(11)
    leaves = _leaves(gen, True, True)
    mask = _mask()
    grads = []
    for fn in (_reference, lambda *args: _fused(*args, 4)):
        omega, a = (t.clone().requires_grad_(True) for t in leaves[5:])
        out = fn(*leaves[:5], omega, a, mask, 0.7, "softmax")
        out.pow(2).sum().backward()
        grads.append((omega.grad, a.grad))
    for grad, grad_ref in zip(*reversed(grads)):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name,options", [("performer", {}), ("random_features", {"component": "gerf",
                                                                                    "weights": "gaussian"})])
def test_module_fuses_in_its_own_dtype_and_matches_separate_projections(name, options, monkeypatch):
    """float64 performer/GERF modules (no q/k/v bias too) take the fused op; every parameter gradient and the input
    gradient equal the unfused ProjectedAttention.forward."""
    calls = []
    original = lean_projected._ProjectedLeanAttention.apply
    monkeypatch.setattr(lean_projected._ProjectedLeanAttention, "apply", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(0)
    module = build_attention(name, dim=D, num_heads=H, num_features=M, qkv_bias=False, **options).double()
    x = torch.randn(B, N, D, dtype=torch.float64, requires_grad=True)
    results = []
    for forward in (module.forward, lambda *a: super(type(module), module).forward(*a)):
        module.zero_grad()
        x.grad = None
        out = forward(x, _mask())
        out.pow(2).sum().backward()
        results.append([out.detach(), x.grad] + [p.grad for p in module.parameters()])
    assert calls == [1]
    for fused, separate in zip(*results):
        torch.testing.assert_close(fused, separate, rtol=1e-8, atol=1e-10)


def test_module_keeps_separate_projections_under_autocast_dropout_and_for_other_dtypes():
    module = build_attention("performer", dim=D, num_heads=H, num_features=M)
    x = torch.randn(1, 5, D)
    assert module._projected_lean_path(x)
    with_dropout = build_attention("performer", dim=D, num_heads=H, num_features=M, dropout=0.1)
    assert not with_dropout._projected_lean_path(x)  # dropout sits between the attention and out_proj
    assert with_dropout.eval()._projected_lean_path(x)
    assert not module._projected_lean_path(x.double())  # the module's parameters are float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not module._projected_lean_path(x)
        assert module(x).shape == (1, 5, D)
    assert not build_attention("performer", dim=D, num_heads=H, causal=True)._projected_lean_path(x)
    assert not build_attention("random_features", dim=D, num_heads=H, component="oprf")._projected_lean_path(x)


def test_errors_name_the_problem():
    x = torch.randn(1, 5, D, dtype=torch.float64)
    omega = torch.randn(H, M, D // H, dtype=torch.float64)
    proj, out = torch.randn(3 * D, D, dtype=torch.float64), torch.randn(D, D, dtype=torch.float64)
    with pytest.raises(ValueError, match="stacked projections"):
        projected_lean_attention(x, proj[: 2 * D], None, out, None, omega, None, None, H)
    with pytest.raises(ValueError, match="output map"):
        projected_lean_attention(x, proj, None, out[:, :3], None, omega, None, None, H)
    with pytest.raises(ValueError, match="float32 or float64"):
        projected_lean_attention(x.half(), proj.half(), None, out.half(), None, omega.half(), None, None, H)
    with pytest.raises(ValueError, match="do not match"):
        projected_lean_attention(x, proj, None, out, None, omega, None, None, 4)
