"""FusedRAdam against torch.optim.RAdam (the reference), including resumption from a state dict."""

from __future__ import annotations

import copy

import torch

from timeseries.optim import FusedRAdam, rectification


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.GELU(), torch.nn.Linear(16, 3))


def _steps(model, optimizer, count, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(count):
        x = torch.randn(8, 6, generator=generator)
        y = torch.randint(0, 3, (8,), generator=generator)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


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
