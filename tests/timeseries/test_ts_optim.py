"""FusedRAdam against torch.optim.RAdam (the reference), including resumption from a state dict."""

from __future__ import annotations

import copy

import pytest
import torch

from timeseries.optim import FusedRAdam, clipped_step, rectification


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))


def _steps(model, optimizer, count, seed, max_norm=None, clip=None):
    """``count`` steps on random batches; with ``max_norm`` the gradients are clipped by ``clip``
    (``"reference"``: torch's clip_grad_norm_ then step; ``"fused"``: :func:`clipped_step`)."""
    generator = torch.Generator().manual_seed(seed)
    norms = []
    for _ in range(count):
        x = torch.randn(8, 6, generator=generator)
        y = torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        if max_norm is None:
            optimizer.step()
        elif clip == "reference":
            norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)))
            optimizer.step()
        else:
            norms.append(float(clipped_step(optimizer, model.parameters(), max_norm)))
    return norms


def test_matches_torch_radam_through_warmup_and_rectified_steps():
    reference, fused = _net(), _net()
    _steps(reference, torch.optim.RAdam(reference.parameters(), lr=1e-2, weight_decay=1e-3), 25, seed=3)
    _steps(fused, FusedRAdam(fused.parameters(), lr=1e-2, weight_decay=1e-3), 25, seed=3)
    for a, b in zip(reference.parameters(), fused.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_state_dict_resumes_the_same_trajectory():
    straight, resumed = _net(), _net()
    optimizer = FusedRAdam(straight.parameters(), lr=1e-2)
    _steps(straight, optimizer, 4, seed=5)
    _steps(straight, optimizer, 6, seed=6)
    first = FusedRAdam(resumed.parameters(), lr=1e-2)
    _steps(resumed, first, 4, seed=5)
    second = FusedRAdam(resumed.parameters(), lr=1e-2)
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    _steps(resumed, second, 6, seed=6)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert second.param_groups[0]["lr"] == 1e-2


def test_rectification_starts_after_the_intractable_steps():
    assert [rectification(t, 0.999) is None for t in range(1, 8)] == [True] * 5 + [False] * 2
    assert abs(rectification(10**6, 0.999) - 1.0) < 1e-6


@pytest.mark.parametrize("max_norm", [0.05, 100.0])  # clipping at every step; never clipping
@pytest.mark.parametrize("optimizer", ["RAdam", "Adam", "SGD"])
def test_clipped_step_matches_clip_grad_norm_then_step(max_norm, optimizer):
    """The fused kernels' gradient divisor gives the same trajectory as torch's clipping followed by torch's
    (non-fused) optimiser; SGD takes the fallback path."""
    reference, clipped = _net(), _net()
    references = {"RAdam": torch.optim.RAdam, "Adam": torch.optim.Adam, "SGD": torch.optim.SGD}
    fast = {"RAdam": FusedRAdam, "Adam": lambda p, lr: torch.optim.Adam(p, lr=lr, fused=True),
            "SGD": torch.optim.SGD}
    expected = _steps(reference, references[optimizer](reference.parameters(), lr=1e-2), 12, 7, max_norm, "reference")
    got = _steps(clipped, fast[optimizer](clipped.parameters(), lr=1e-2), 12, 7, max_norm, "fused")
    assert got == pytest.approx(expected, rel=1e-5)
    assert (min(expected) > max_norm) == (max_norm < 1.0)  # the two cases are what they claim
    for a, b in zip(reference.parameters(), clipped.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
