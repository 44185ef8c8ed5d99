"""Behaviour policies for collecting offline data: uniform random actions, and linear policies trained with
Augmented Random Search (ARS V2-t; Mania, Guy and Recht, 2018, "Simple random search provides a competitive
approach to reinforcement learning"), whose snapshots along training give returns from random to competent,
like D4RL's "medium-replay" data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

# ARS subtracts the per-step alive bonus during training so that standing still is not a local optimum
ALIVE_BONUS = {"hopper": 1.0, "walker2d": 1.0, "halfcheetah": 0.0}


@dataclass
class LinearPolicy:
    """``a = clip(M (s - mean) / std, -1, 1)``.

    Attributes:
        weight: M, ``(A, S)``.
        mean, std: ``(S,)`` observation statistics.
    """

    weight: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return np.clip(self.weight @ ((observation - self.mean) / self.std), -1.0, 1.0)


class RandomPolicy:
    """Uniform random actions in [-1, 1]^A (the MuJoCo tasks' action box)."""

    def __init__(self, act_dim: int, rng: np.random.Generator) -> None:
        self.act_dim = act_dim
        self.rng = rng

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, self.act_dim)


class NoisyPolicy:
    """A policy plus Gaussian action noise of standard deviation ``noise``, clipped to [-1, 1]."""

    def __init__(self, policy, noise: float, rng: np.random.Generator) -> None:
        self.policy = policy
        self.noise = noise
        self.rng = rng

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        action = self.policy(observation)
        return np.clip(action + self.noise * self.rng.standard_normal(action.shape), -1.0, 1.0)


@dataclass
class _RunningStats:
    """Welford mean and variance of observations."""

    count: float = 0.0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def update(self, batch: np.ndarray) -> None:
        if self.mean is None:
            self.mean = np.zeros(batch.shape[1])
            self.m2 = np.zeros(batch.shape[1])
        n = len(batch)
        delta = batch.mean(axis=0) - self.mean
        total = self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + batch.var(axis=0) * n + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> np.ndarray:
        if self.count < 2:
            return np.ones_like(self.mean)
        return np.sqrt(self.m2 / self.count) + 1e-2


@dataclass
class ARSResult:
    """Snapshots of the policy along training and the mean return of each iteration's evaluation rollouts."""

    snapshots: list[LinearPolicy] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)


def rollout(env, policy, horizon: int, shift: float = 0.0) -> tuple[float, np.ndarray]:
    """One episode; returns the shifted return and the visited observations ``(T, S)``."""
    observation, _ = env.reset()
    total, visited = 0.0, [observation]
    for _ in range(horizon):
        observation, reward, terminated, truncated, _ = env.step(policy(observation))
        total += reward - shift
        visited.append(observation)
        if terminated or truncated:
            break
    return total, np.asarray(visited)


def train_ars(
    env,
    task: str,
    iterations: int = 60,
    directions: int = 8,
    top: int = 4,
    step_size: float = 0.02,
    exploration: float = 0.03,
    horizon: int = 1000,
    snapshots: int = 6,
    seed: int = 0,
) -> ARSResult:
    """Train a linear policy with ARS V2-t.

    Args:
        env: a gymnasium environment.
        task: "hopper", "halfcheetah" or "walker2d" (selects the alive-bonus shift).
        iterations: ARS updates; each runs ``2 * directions`` episodes.
        directions: N, random directions per update.
        top: b, best directions kept.
        step_size: alpha.
        exploration: nu, the perturbation scale.
        horizon: episode cap during training.
        snapshots: number of policies kept, evenly spread over training (the last one included).
        seed: seed of the directions.

    Returns:
        :class:`ARSResult` with the snapshots (earliest first) and per-iteration mean returns (unshifted).
    """
    rng = np.random.default_rng(seed)
    act_dim, state_dim = env.action_space.shape[0], env.observation_space.shape[0]
    weight = np.zeros((act_dim, state_dim))
    stats = _RunningStats()
    stats.update(np.zeros((1, state_dim)))
    shift = ALIVE_BONUS.get(task, 0.0)
    keep = set(np.linspace(0, iterations - 1, snapshots).round().astype(int).tolist())
    result = ARSResult()
    progress = tqdm(range(iterations), desc=f"ARS {task}", unit="it")
    for iteration in progress:
        mean, std = stats.mean.copy(), stats.std.copy()
        deltas = rng.standard_normal((directions, act_dim, state_dim))
        plus, minus, seen = np.zeros(directions), np.zeros(directions), []
        for k in range(directions):
            plus[k], visited_p = rollout(env, LinearPolicy(weight + exploration * deltas[k], mean, std), horizon, shift)
            minus[k], visited_m = rollout(env, LinearPolicy(weight - exploration * deltas[k], mean, std), horizon, shift)
            seen.extend((visited_p, visited_m))
        order = np.argsort(-np.maximum(plus, minus))[:top]
        sigma = np.concatenate([plus[order], minus[order]]).std() + 1e-8
        weight = weight + step_size / (top * sigma) * np.einsum("k,kij->ij", plus[order] - minus[order], deltas[order])
        for visited in seen:
            stats.update(visited)
        policy = LinearPolicy(weight.copy(), mean, std)
        score, _ = rollout(env, policy, horizon)
        result.returns.append(score)
        progress.set_postfix(ret=f"{score:.0f}")
        if iteration in keep:
            result.snapshots.append(policy)
    return result


def save_policies(path: str | os.PathLike, policies: list[LinearPolicy], returns: list[float]) -> Path:
    """Save linear policies (and the training curve) to ``.npz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        weights=np.stack([p.weight for p in policies]),
        means=np.stack([p.mean for p in policies]),
        stds=np.stack([p.std for p in policies]),
        returns=np.asarray(returns),
    )
    return path


def load_policies(path: str | os.PathLike) -> list[LinearPolicy]:
    """Linear policies saved by :func:`save_policies`.

    Raises:
        FileNotFoundError, ValueError: for a missing file or one without ``weights``/``means``/``stds``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file {path} does not exist")
    with np.load(path) as data:
        missing = {"weights", "means", "stds"} - set(data.files)
        if missing:
            raise ValueError(f"{path} is not a policy file from `python -m rl collect`: missing {sorted(missing)}")
        return [LinearPolicy(w, m, s) for w, m, s in zip(data["weights"], data["means"], data["stds"])]
