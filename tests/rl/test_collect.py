"""Behaviour policies and mixed-quality collection from the real Hopper environment."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rl.__main__ import main as cli
from rl.data import load_dataset
from rl.policies import LinearPolicy, load_policies, save_policies


def test_linear_policies_clip_and_round_trip(tmp_path):
    policy = LinearPolicy(np.full((3, 11), 10.0), np.zeros(11), np.ones(11))
    assert np.all(np.abs(policy(np.ones(11))) <= 1.0)
    path = save_policies(tmp_path / "p.npz", [policy, policy], [1.0, 2.0])
    loaded = load_policies(path)
    assert len(loaded) == 2
    np.testing.assert_array_equal(loaded[1].weight, policy.weight)
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="missing"):
        load_policies(tmp_path / "other.npz")


def test_mixed_collection_records_random_and_trained_behaviour(tmp_path):
    out = tmp_path / "mixed.hdf5"
    args = ["collect", "--env", "Hopper-v5", "--out", str(out), "--episodes", "8", "--ars-iterations", "2",
            "--ars-snapshots", "2", "--max-episode-steps", "30", "--random-fraction", "0.5", "--no-plot"]
    assert cli(args) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["behaviours"]["random"]["episodes"] == 4
    assert sum(b["episodes"] for b in summary["behaviours"].values()) == 8
    assert {"ars0", "ars1"} <= set(summary["behaviours"])
    trajectories, info = load_dataset(str(out))
    assert len(trajectories) == 8 and info["env_id"] == "Hopper-v5" and info["behaviour"] == "mixed"
    returns = [t.episode_return for t in trajectories]
    assert np.std(returns) > 0
    # the saved policies can be reused without training
    again = tmp_path / "again.hdf5"
    assert cli(["collect", "--env", "hopper", "--out", str(again), "--episodes", "2", "--behaviour", "trained",
                "--policy-file", str(out.with_suffix(".policy.npz")), "--max-episode-steps", "30", "--no-plot"]) == 0
    assert len(load_dataset(str(again))[0]) == 2
