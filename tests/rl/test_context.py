"""Context windows: returns-to-go, normalisation, right padding and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl.data import ContextDataset, split_trajectories, state_statistics
from rl.data.context import ACTION_PAD
from rl.data.trajectories import returns_to_go


def test_returns_to_go_sums_future_rewards():
    np.testing.assert_allclose(returns_to_go(np.array([1.0, 2.0, 3.0])), [6.0, 5.0, 3.0])


def test_every_start_is_a_window_and_tails_are_right_padded(make_arrays):
    arrays = make_arrays((5, 3))
    trajectories = split_trajectories(arrays)
    data = ContextDataset(trajectories, context_length=4, rtg_scale=10.0)
    assert len(data) == 8
    mean, std = state_statistics(trajectories)
    # window starting at step 3 of the first (5-step) trajectory: 2 real steps, 2 padded
    item = data.batch(np.array([3]))
    assert item["mask"].tolist() == [[True, True, False, False]]
    np.testing.assert_allclose(item["states"][0, :2].numpy(), (arrays["observations"][3:5] - mean) / std, rtol=1e-5)
    np.testing.assert_array_equal(item["actions"][0, :2].numpy(), arrays["actions"][3:5])
    rtg = returns_to_go(arrays["rewards"][:5])[3:5] / 10.0
    np.testing.assert_allclose(item["returns_to_go"][0, :2, 0].numpy(), rtg, rtol=1e-5)
    assert item["timesteps"].tolist() == [[3, 4, 0, 0]]
    assert torch.all(item["states"][0, 2:] == 0) and torch.all(item["actions"][0, 2:] == ACTION_PAD)
    assert torch.all(item["returns_to_go"][0, 2:] == 0)
    # the second trajectory starts again at timestep 0 with its own returns
    second = data.batch(np.array([5]))
    assert second["timesteps"].tolist() == [[0, 1, 2, 0]] and second["mask"].sum() == 3
    np.testing.assert_allclose(second["returns_to_go"][0, 0, 0].item(), arrays["rewards"][5:].sum() / 10.0, rtol=1e-5)


def test_batch_shapes_and_single_items(make_arrays):
    data = ContextDataset(split_trajectories(make_arrays((6, 7))), context_length=5)
    batch = data.batch(np.arange(len(data)))
    assert batch["states"].shape == (13, 5, 11) and batch["actions"].shape == (13, 5, 3)
    assert batch["returns_to_go"].shape == (13, 5, 1) and batch["mask"].dtype == torch.bool
    assert batch["mask"][:, 0].all()
    item = data[4]
    assert item["states"].shape == (5, 11)
    # the padded and normalised states have zero mean over real steps of all windows starting at 0
    starts = data.batch(np.array([0, 6]))
    assert starts["mask"].sum() == 10


def test_too_long_trajectories_are_refused(make_arrays):
    with pytest.raises(ValueError, match="max_ep_len=4"):
        ContextDataset(split_trajectories(make_arrays((5, 3))), max_ep_len=4)
