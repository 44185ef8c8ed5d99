"""Episodes of an offline data set: splitting D4RL's flat transitions, returns and state statistics.

As in the data preparation of the Decision Transformer (Chen et al., 2021) and its Flowformer/Primal-Attention
forks, an episode ends at a transition with ``terminals`` or ``timeouts`` set. Transitions after the last such
flag (an episode cut off by the end of the file) form a final, shorter trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Trajectory:
    """One episode.

    Attributes:
        observations: ``(T, S)`` float32.
        actions: ``(T, A)`` float32.
        rewards: ``(T,)`` float32.
        terminal: the episode ended in a terminal state (not a time-out or the end of the file).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminal: bool = False

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum(dtype=np.float64))


def split_trajectories(arrays: dict[str, np.ndarray]) -> list[Trajectory]:
    """Cut flat D4RL arrays into episodes at ``terminals | timeouts``.

    Args:
        arrays: validated D4RL arrays (see :func:`rl.data.layout.validate_layout`).

    Returns:
        The episodes in file order.
    """
    ends = np.flatnonzero(arrays["terminals"] | arrays["timeouts"]) + 1
    total = len(arrays["rewards"])
    bounds = [0, *ends.tolist()]
    if bounds[-1] != total:
        bounds.append(total)
    trajectories = []
    for start, stop in zip(bounds[:-1], bounds[1:]):
        trajectories.append(
            Trajectory(
                observations=arrays["observations"][start:stop],
                actions=arrays["actions"][start:stop],
                rewards=arrays["rewards"][start:stop],
                terminal=bool(arrays["terminals"][stop - 1]),
            )
        )
    return trajectories


def returns_to_go(rewards: np.ndarray) -> np.ndarray:
    """Undiscounted return-to-go ``R_t = sum_{t' >= t} r_t'`` of ``rewards (T,)``, as ``(T,)`` float64."""
    return np.cumsum(rewards[::-1], dtype=np.float64)[::-1].copy()


def state_statistics(trajectories: list[Trajectory], eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (+ ``eps``) of every observation, each ``(S,)`` float32."""
    states = np.concatenate([t.observations for t in trajectories], axis=0).astype(np.float64)
    return states.mean(axis=0).astype(np.float32), (states.std(axis=0) + eps).astype(np.float32)


def dataset_statistics(trajectories: list[Trajectory]) -> dict[str, float]:
    """Episode count, transitions, and the mean/std/min/max of episode returns and lengths."""
    returns = np.array([t.episode_return for t in trajectories])
    lengths = np.array([len(t) for t in trajectories])
    return {
        "episodes": int(len(trajectories)),
        "transitions": int(lengths.sum()),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "return_min": float(returns.min()),
        "return_max": float(returns.max()),
        "length_mean": float(lengths.mean()),
        "length_max": int(lengths.max()),
    }
