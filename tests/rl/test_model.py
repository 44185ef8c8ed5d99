"""The Decision Transformer over core attentions: causality (perturbation), padding masks, schedules."""

from __future__ import annotations

import pytest
import torch

import core
from rl.config import TrainConfig, attention_schedule, build_model
from rl.model import DecisionTransformer

CAUSAL = core.list_attentions(causal=True)
S, A, K = 5, 2, 6


def tiny(schedule, seed=0) -> DecisionTransformer:
    torch.manual_seed(seed)
    model = DecisionTransformer(S, A, schedule, embed_dim=16, num_heads=2, context_length=K, max_ep_len=50,
                                attention_options={"primal": {"low_rank": 4}})
    return model.double().eval()


def inputs(batch=3, length=K, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, length, S, generator=g, dtype=torch.float64),
            torch.rand(batch, length, A, generator=g, dtype=torch.float64) * 2 - 1,
            torch.randn(batch, length, 1, generator=g, dtype=torch.float64),
            torch.randint(0, 50, (batch, length), generator=g))


@pytest.mark.parametrize("name", CAUSAL + ["primal+dt"])
def test_changing_the_future_leaves_past_actions_unchanged(name):
    schedule = attention_schedule("primal+dt", 2) if name == "primal+dt" else [name, name]
    model = tiny(schedule)
    states, actions, rtg, timesteps = inputs()
    base = model(states, actions, rtg, timesteps)
    t = 2
    states2, actions2, rtg2 = states.clone(), actions.clone(), rtg.clone()
    states2[:, t + 1:] += 3.0
    rtg2[:, t + 1:] -= 2.0
    actions2[:, t:] = -actions2[:, t:]  # a_t itself comes after s_t, so the prediction of a_t must not see it
    changed = model(states2, actions2, rtg2, timesteps)
    torch.testing.assert_close(changed[:, : t + 1], base[:, : t + 1], rtol=1e-10, atol=1e-12)
    assert (changed[:, t + 1] - base[:, t + 1]).abs().max() > 1e-6, "the perturbation must reach later outputs"


@pytest.mark.parametrize("name", CAUSAL)
def test_padded_steps_never_change_real_predictions(name):
    model = tiny([name, name])
    states, actions, rtg, timesteps = inputs()
    mask = torch.ones(3, K, dtype=torch.bool)
    mask[0, 4:] = False
    mask[1, 2:] = False
    base = model(states, actions, rtg, timesteps, mask)
    noisy = [x.clone() for x in (states, actions, rtg)]
    for x in noisy:
        x[~mask] = 100.0
    changed = model(*noisy, timesteps, mask)
    torch.testing.assert_close(changed[mask], base[mask], rtol=1e-10, atol=1e-12)


def test_the_step_mask_reaches_every_attention_as_a_token_mask():
    model = tiny(attention_schedule("primal+dt", 2))
    seen = []
    for block in model.blocks:
        block.attention.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["key_padding_mask"]), with_kwargs=True)
    mask = torch.tensor([[True] * 4 + [False] * 2, [True] * 6, [True] + [False] * 5])
    model(*inputs(), mask)
    assert len(seen) == 2
    for token_mask in seen:
        assert token_mask.shape == (3, 3 * K)
        assert torch.equal(token_mask, mask.repeat_interleave(3, dim=1))


def test_get_action_uses_the_last_k_steps():
    model = tiny(attention_schedule("primal+dt", 2))
    states, actions, rtg, timesteps = inputs(batch=2, length=K + 4)
    long = model.get_action(states, actions, rtg, timesteps)
    short = model.get_action(states[:, -K:], actions[:, -K:], rtg[:, -K:], timesteps[:, -K:])
    torch.testing.assert_close(long, short)
    assert long.shape == (2, A) and long.abs().max() < 1


def test_schedules_and_errors():
    assert attention_schedule("dt", 3) == ["softmax"] * 3
    assert attention_schedule("primal+dt", 3) == ["softmax", "softmax", "primal"]
    assert attention_schedule("linear", 2) == ["linear", "linear"]
    with pytest.raises(ValueError, match="causal attention"):
        attention_schedule("efficient", 3)
    model = build_model(TrainConfig(embed_dim=16, num_heads=2), 11, 3, low_rank=7)
    assert model.blocks[-1].attention.low_rank == 7 and model.blocks[-1].attention.causal
    assert not model.blocks[-1].attention.original_padding
    official = build_model(TrainConfig(embed_dim=16, num_heads=2, primal_original_padding=True), 11, 3, low_rank=7)
    assert official.blocks[-1].attention.original_padding
    states, actions, rtg, timesteps = inputs()
    with pytest.raises(ValueError, match="timesteps must lie"):
        tiny(["softmax"])(states, actions, rtg, timesteps + 100)
    with pytest.raises(ValueError, match="exceeds context_length"):
        tiny(["softmax"])(*inputs(length=K + 1))
