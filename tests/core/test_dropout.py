"""core.nn.Dropout: the cheap CPU mask against the Bernoulli law it stands for (binomial standard errors)."""

import math

import pytest
import torch
import torch.nn.functional as F

import core.nn.dropout as dropout_module
from core.nn import Dropout, fast_dropout
from core.nn.dropout import drop_threshold, dropout_mask, uniform16


@pytest.fixture(params=["torch", "numpy"])
def word_source(request, monkeypatch):
    """Run a test with the random words of every mask from torch's generator, then from numpy's SFC64."""
    monkeypatch.setattr(dropout_module, "NUMPY_WORDS_FROM", 1 << 62 if request.param == "torch" else 0)
    return request.param


def _within(observed: float, expected: float, variance_per_draw: float, draws: int, sigmas: float = 5.0) -> bool:
    return abs(observed - expected) <= sigmas * math.sqrt(variance_per_draw / draws)


@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.9])
def test_drop_rate_and_scale_follow_the_rounded_probability(p, word_source):
    torch.manual_seed(0)
    shape = (400, 1000)
    mask = dropout_mask(shape, p)
    rate = drop_threshold(p) / 2**16
    assert abs(rate - p) <= 2**-17
    dropped = (mask == 0).double().mean().item()
    assert _within(dropped, rate, rate * (1 - rate), mask.numel())
    kept_values = mask[mask != 0].unique()
    assert kept_values.numel() == 1
    assert kept_values.item() == pytest.approx(1.0 / (1.0 - rate), rel=1e-6)


def test_every_lane_of_a_64_bit_draw_is_uniform(word_source):
    # plain random_() on int64 never sets the top bit: the fourth int16 of each word would never be negative
    torch.manual_seed(1)
    u = uniform16((200_000, 4)).double()
    draws = u.shape[0]
    for lane in range(4):
        column = u[:, lane]
        assert _within((column < 0).double().mean().item(), 0.5, 0.25, draws)
        assert _within(column.mean().item(), -0.5, (2**16) ** 2 / 12, draws)


def test_neighbouring_elements_are_independent(word_source):
    torch.manual_seed(2)
    p = 0.3
    mask = dropout_mask((500_000, 2), p) == 0
    rate = drop_threshold(p) / 2**16
    both = (mask[:, 0] & mask[:, 1]).double().mean().item()
    assert _within(both, rate**2, rate**2 * (1 - rate**2), mask.shape[0])


def test_output_is_unbiased_and_gradient_uses_the_same_mask():
    torch.manual_seed(3)
    x = torch.randn(64, 512, dtype=torch.float64, requires_grad=True)
    out = fast_dropout(x, 0.2)
    out.backward(torch.ones_like(out))
    ratio = out.detach() / x.detach()
    assert torch.allclose(x.grad, ratio)  # d out / d x is the mask itself
    rate = drop_threshold(0.2) / 2**16
    draws = 2000
    mean = torch.stack([fast_dropout(torch.ones(256), 0.2) for _ in range(draws)]).mean().item()
    assert _within(mean, 1.0, rate / (1 - rate), draws * 256)


@pytest.mark.parametrize("shape", [(8, 16), (300, 200)])  # below and above NUMPY_WORDS_FROM
def test_seeded_runs_repeat_and_modes_fall_back(shape):
    layer = Dropout(0.1)
    x = torch.randn(shape)
    torch.manual_seed(4)
    first = layer(x)
    torch.manual_seed(4)
    assert torch.equal(first, layer(x))
    assert not torch.equal(first, x)
    assert not torch.equal(layer(x), layer(x))  # consecutive calls draw fresh masks
    layer.eval()
    assert torch.equal(layer(x), x)
    assert torch.equal(fast_dropout(x, 0.0), x)
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))
    integers = torch.arange(10)
    with pytest.raises(RuntimeError):
        F.dropout(integers, 0.5, True)  # the fallback keeps torch's own error for non-float input
    with pytest.raises(RuntimeError):
        fast_dropout(integers, 0.5)


def test_low_precision_masks_hold_exact_zeros_and_scale():
    torch.manual_seed(5)
    out = fast_dropout(torch.ones(1000, 100, dtype=torch.bfloat16), 0.1)
    values = out.unique().float().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / 0.9, rel=1e-2)


def test_bad_probability_is_refused():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        drop_threshold(1.5)
    with pytest.raises(ValueError, match="rounds to 1"):
        dropout_mask((4,), 0.999999999)
