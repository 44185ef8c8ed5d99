"""The MuJoCo locomotion tasks of D4RL (Fu et al., 2020) as used by the Decision Transformer (Chen et al., 2021)
and Primal.+DT (Chen et al., NeurIPS 2023): gymnasium environments, D4RL reference returns for the normalised
score, the evaluation return targets and the paper's per-task ``low_rank`` s.

Gymnasium's v4/v5 HalfCheetah, Hopper and Walker2d have the observation and action spaces of D4RL's v2 data
(gym v3 environments), so policies trained on D4RL data are evaluated in them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskSpec:
    """One locomotion task.

    Attributes:
        key: short name ("hopper", "halfcheetah", "walker2d").
        gym_name: gymnasium environment name without version ("Hopper").
        state_dim: observation size.
        act_dim: action size.
        ref_min_score: D4RL random-policy return (normalised score 0).
        ref_max_score: D4RL expert return (normalised score 100).
        targets: the return-to-go targets of the DT evaluation (high, low).
    """

    key: str
    gym_name: str
    state_dim: int
    act_dim: int
    ref_min_score: float
    ref_max_score: float
    targets: tuple[float, float]


TASKS: dict[str, TaskSpec] = {
    "hopper": TaskSpec("hopper", "Hopper", 11, 3, -20.272305, 3234.3, (3600.0, 1800.0)),
    "halfcheetah": TaskSpec("halfcheetah", "HalfCheetah", 17, 6, -280.178953, 12135.0, (12000.0, 6000.0)),
    "walker2d": TaskSpec("walker2d", "Walker2d", 17, 6, 1.629008, 4592.3, (5000.0, 2500.0)),
}

# s (``low_rank``) of the primal layer per (task, D4RL dataset) in the official run script. The script has no
# hopper-medium command (its "Hopper" line runs halfcheetah), so hopper-medium takes hopper's other value.
LOW_RANK = {
    ("halfcheetah", "medium-expert"): 96,
    ("halfcheetah", "medium"): 64,
    ("halfcheetah", "medium-replay"): 32,
    ("hopper", "medium-expert"): 64,
    ("hopper", "medium"): 64,
    ("hopper", "medium-replay"): 64,
    ("walker2d", "medium-expert"): 96,
    ("walker2d", "medium"): 96,
    ("walker2d", "medium-replay"): 96,
}
DEFAULT_LOW_RANK = {"halfcheetah": 64, "hopper": 64, "walker2d": 96}

ENV_VERSIONS = ("v4", "v5")
_ALIASES = (("halfcheetah", "halfcheetah"), ("half_cheetah", "halfcheetah"), ("cheetah", "halfcheetah"),
            ("hopper", "hopper"), ("walker2d", "walker2d"), ("walker", "walker2d"))


def task_key(name: str) -> str:
    """The task of any common spelling: "hopper", "Hopper-v5", "hopper-medium-v2", "mujoco/hopper/expert-v0".

    Raises:
        ValueError: if the name mentions none of the three tasks.
    """
    lowered = name.lower()
    for alias, key in _ALIASES:
        if alias in lowered:
            return key
    raise ValueError(f"cannot tell the task of {name!r}: expected a name containing one of {sorted(TASKS)}")


def task_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of a task name in any spelling accepted by :func:`task_key`."""
    return TASKS[task_key(name)]


def dataset_kind(name: str) -> str | None:
    """The D4RL dataset kind a name mentions ("medium-expert", "medium-replay", "medium", ...), else None."""
    lowered = name.lower().replace("_", "-")
    for kind in ("medium-expert", "medium-replay", "medium", "expert", "random"):
        if kind in lowered:
            return kind
    return None


def default_low_rank(task: str, dataset_name: str = "") -> int:
    """s of the official script for this task and dataset, falling back to the task's usual value."""
    key = task_key(task)
    return LOW_RANK.get((key, dataset_kind(dataset_name) or ""), DEFAULT_LOW_RANK[key])


def normalized_score(episode_return: float | np.ndarray, task: str) -> float | np.ndarray:
    """D4RL normalised score ``100 (R - R_random) / (R_expert - R_random)`` (the paper's tables)."""
    spec = task_spec(task)
    return 100.0 * (np.asarray(episode_return) - spec.ref_min_score) / (spec.ref_max_score - spec.ref_min_score)


def gym_id(task: str, version: str = "v5") -> str:
    """Gymnasium id, e.g. ``gym_id("hopper") == "Hopper-v5"``.

    Raises:
        ValueError: for a version other than v4 or v5.
    """
    if version not in ENV_VERSIONS:
        raise ValueError(f"environment version must be one of {ENV_VERSIONS}, got {version!r}")
    return f"{task_spec(task).gym_name}-{version}"


def make_env(task: str, version: str = "v5", seed: int | None = None, max_episode_steps: int = 1000):
    """A gymnasium MuJoCo environment for the task, reset once with ``seed`` when given.

    Raises:
        RuntimeError: if gymnasium or mujoco is missing.
    """
    try:
        import gymnasium as gym
    except ImportError as error:
        raise RuntimeError('gymnasium is not installed; install the RL extra: pip install -e ".[rl]"') from error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # v4 is deprecated in gymnasium 1.x but still the same task
        try:
            env = gym.make(gym_id(task, version), max_episode_steps=max_episode_steps)
        except gym.error.DependencyNotInstalled as error:
            raise RuntimeError(f"{gym_id(task, version)} needs mujoco: pip install 'gymnasium[mujoco]' ({error})") from error
    spec = task_spec(task)
    if env.observation_space.shape != (spec.state_dim,) or env.action_space.shape != (spec.act_dim,):
        raise RuntimeError(
            f"{gym_id(task, version)} has observations {env.observation_space.shape} and actions "
            f"{env.action_space.shape}; D4RL's {spec.key} data expects ({spec.state_dim},) and ({spec.act_dim},)"
        )
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env
