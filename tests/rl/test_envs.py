"""Task names, gymnasium versions and the paper's low_rank table."""

from __future__ import annotations

import pytest

from rl.envs import default_low_rank, gym_id, make_env, task_key


def test_task_names_in_every_spelling():
    assert task_key("Hopper-v5") == "hopper"
    assert task_key("halfcheetah_medium_replay-v2") == "halfcheetah"
    assert task_key("mujoco/walker2d/expert-v0") == "walker2d"
    with pytest.raises(ValueError, match="cannot tell the task"):
        task_key("ant-medium-v2")


def test_low_rank_follows_the_official_script():
    assert default_low_rank("halfcheetah", "halfcheetah_medium_replay-v2") == 32
    assert default_low_rank("halfcheetah", "halfcheetah-medium-expert-v2") == 96
    assert default_low_rank("halfcheetah", "halfcheetah-medium-v2") == 64
    assert default_low_rank("walker2d", "anything") == 96
    assert default_low_rank("hopper", "hopper-mixed") == 64


@pytest.mark.parametrize("version", ["v4", "v5"])
def test_gymnasium_versions_have_the_d4rl_spaces(version):
    env = make_env("walker2d", version, seed=0)
    assert env.observation_space.shape == (17,) and env.action_space.shape == (6,)
    env.close()
    with pytest.raises(ValueError, match="v4 or v5|one of"):
        gym_id("hopper", "v3")
