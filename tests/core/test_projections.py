"""shared_input_projections against separate nn.Linear calls differentiated by autograd (float64)."""

import pytest
import torch
from torch import nn

from core.ops.projections import shared_input_projections


def _layers(widths, bias=True):
    torch.manual_seed(0)
    return [nn.Linear(6, w, bias=bias).double() for w in widths]


@pytest.mark.parametrize("bias", [True, False])
def test_outputs_and_every_gradient_match_separate_linears(bias):
    layers = _layers([5, 5, 3], bias)
    x = torch.randn(2, 7, 6, dtype=torch.float64, requires_grad=True)
    probes = [torch.randn(2, 7, w, dtype=torch.float64) for w in (5, 5, 3)]
    params = [x, *(p for layer in layers for p in layer.parameters())]
    fast = shared_input_projections(x, *layers)
    reference = [layer(x) for layer in layers]
    for got, want in zip(fast, reference):
        torch.testing.assert_close(got, want)
    got = torch.autograd.grad(sum((o * p).sum() for o, p in zip(fast, probes)), params)
    want = torch.autograd.grad(sum((o * p).sum() for o, p in zip(reference, probes)), params)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)


def test_unused_outputs_get_no_gradient_and_inputs_without_grad_are_skipped():
    layers = _layers([4, 4])
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    first, _ = shared_input_projections(x, *layers)
    first.sum().backward()
    torch.testing.assert_close(x.grad, layers[0].weight.sum(dim=0).expand(3, 6))
    assert layers[1].weight.grad is None and layers[1].bias.grad is None
    frozen = torch.randn(3, 6, dtype=torch.float64)  # no input gradient wanted: parameters still get theirs
    layers[0].zero_grad()
    out, _ = shared_input_projections(frozen, *layers)
    out.sum().backward()
    torch.testing.assert_close(layers[0].bias.grad, torch.full((4,), 3.0, dtype=torch.float64))
    torch.testing.assert_close(layers[0].weight.grad, frozen.sum(dim=0).expand(4, 6))


def test_gradcheck():
    layers = _layers([3, 2])
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: shared_input_projections(t, *layers), (x,))


def test_autocast_falls_back_to_the_plain_layers():
    layers = [nn.Linear(6, 4), nn.Linear(6, 4)]
    x = torch.randn(5, 6, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = shared_input_projections(x, *layers)
    assert all(o.dtype == torch.bfloat16 for o in outs)
    sum(o.float().sum() for o in outs).backward()
    assert x.grad.dtype == torch.float32 and layers[1].weight.grad is not None
