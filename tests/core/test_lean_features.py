"""The memory-lean non-causal random-feature op against plain autograd through stored feature maps (float64)."""

import pytest
import torch

from core import build_attention
from core.ops.lean_features import lean_positive_feature_attention
from core.ops.random_features import positive_attention_features, random_feature_attention


def _stored_features(q, k, v, omega, a, kernel, mask, scale):
    qf, kf = positive_attention_features(q, k, omega, a, kernel, mask, input_scale=scale)
    return random_feature_attention(qf, kf, v, mask)


def _lean(q, k, v, omega, a, kernel, mask, scale, chunk):
    if a is None:
        weight, bias = scale * omega, None
    else:
        weight, bias = (1 - 4 * a).sqrt() * scale * omega, a * omega.pow(2).sum(-1).unsqueeze(-2)
    kappa = scale**2 / 2 if kernel == "softmax" else scale**2
    return lean_positive_feature_attention(q, k, v, weight, bias, mask, kappa, chunk_size=chunk)


@pytest.mark.parametrize("kernel", ["softmax", "gaussian"])
@pytest.mark.parametrize("with_a", [False, True])
@pytest.mark.parametrize("chunk", [5, 64])
def test_op_matches_stored_features_values_and_gradients(kernel, with_a, chunk):
    gen = torch.Generator().manual_seed(3)
    B, H, N, d, m = 3, 2, 23, 8, 12
    leaves = [torch.randn(B, H, N, d, generator=gen, dtype=torch.float64) * 1.5 for _ in range(2)]
    leaves += [torch.randn(B, H, N, 5, generator=gen, dtype=torch.float64), torch.randn(H, m, d, generator=gen,
                                                                                       dtype=torch.float64)]
    leaves += [torch.rand(1, H, 1, 1, generator=gen, dtype=torch.float64) * -0.3] if with_a else []
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 15:] = False  # trailing padding
    mask[2, :11] = False  # leading padding: the first chunks hold no real key
    upstream = torch.randn(B, H, N, 5, generator=gen, dtype=torch.float64)
    results = []
    for fn in (_stored_features, lambda *args: _lean(*args, chunk)):
        inputs = [t.clone().requires_grad_(True) for t in leaves]
        a = inputs[4] if with_a else None
        out = fn(*inputs[:4], a, kernel, mask, 8**-0.25)
        (out * upstream).sum().backward()
        results.append((out.detach(), [t.grad for t in inputs]))
    (out_ref, grads_ref), (out, grads) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    for grad, grad_ref in zip(grads, grads_ref):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("chunk", [3, 8, 64])
def test_token_major_views_per_batch_weights_and_chunked_key_maxima(chunk):
    """The layer's inputs: head views of token-major ``[B, N, H * d]`` projections, one A (so one folded weight) per
    sequence as OPRF sets it, keys whose chunks peak at very different exponents (the chunk states are rescaled to
    the sequence maximum), padding. Values and every gradient equal the stored-feature path (float64); the output
    is token-major, so merging the heads is a view."""
    gen = torch.Generator().manual_seed(5)
    B, H, N, d, m, scale = 2, 3, 37, 4, 6, 4**-0.25
    tokens = [torch.randn(B, N, H * d, generator=gen, dtype=torch.float64) for _ in range(3)]
    tokens[1][:, :9] *= 4.0  # the first keys dominate: later chunks sit far below the sequence maximum
    omega = torch.randn(H, m, d, generator=gen, dtype=torch.float64)
    a = torch.rand(B, H, 1, 1, generator=gen, dtype=torch.float64) * -0.2
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 30:] = False
    upstream = torch.randn(B, H, N, d, generator=gen, dtype=torch.float64)
    results = []
    for lean in (False, True):
        leaves = [t.clone().requires_grad_(True) for t in (*tokens, omega, a)]
        q, k, v = (t.view(B, N, H, d).transpose(1, 2) for t in leaves[:3])
        if lean:
            out = _lean(q, k, v, leaves[3], leaves[4], "softmax", mask, scale, chunk)
            assert out.transpose(1, 2).is_contiguous()
        else:
            out = _stored_features(q, k, v, leaves[3], leaves[4], "softmax", mask, scale)
        (out * upstream).sum().backward()
        results.append((out.detach(), [t.grad for t in leaves]))
    (out_ref, grads_ref), (out, grads) = results
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-12)
    for grad, grad_ref in zip(grads, grads_ref):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-8, atol=1e-10)


def test_all_padding_sequence_gives_zero_output_and_finite_gradients():
    q, k, v = (torch.randn(1, 2, 9, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    omega = torch.randn(2, 6, 4, dtype=torch.float64)
    out = lean_positive_feature_attention(q, k, v, omega, key_padding_mask=torch.zeros(1, 9, dtype=torch.bool),
                                          chunk_size=4)
    out.sum().backward()
    assert torch.equal(out, torch.zeros_like(out))
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@pytest.mark.parametrize("component", ["posrf", "gerf", "oprf", "saderf"])
def test_module_paths_agree(component):
    """recompute_features=True (the default) and False are the same function of the module's parameters."""
    torch.manual_seed(0)
    module = build_attention("random_features", dim=16, num_heads=2, component=component,
                             weights="fastfood_learnable", num_features=8).double()
    x = torch.randn(2, 13, 16, dtype=torch.float64)
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[0, 9:] = False
    outputs, grads = [], []
    for lean in (True, False):
        module.recompute_features = lean
        module.zero_grad()
        out = module(x, key_padding_mask=mask)
        out.pow(2).sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in module.parameters()])
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-10, atol=1e-12)
    for lean_grad, stored_grad in zip(*grads):
        torch.testing.assert_close(lean_grad, stored_grad, rtol=1e-8, atol=1e-10)


def test_shape_errors_are_clear():
    q = torch.randn(1, 2, 5, 4)
    with pytest.raises(ValueError, match="expected q, k"):
        lean_positive_feature_attention(q, q[..., :3, :], q, torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="width"):
        lean_positive_feature_attention(q, q, q, torch.randn(2, 3, 5))
