"""Context windows of K timesteps for Decision Transformer training (Chen et al., 2021), as in the
Flowformer/Primal-Attention ``ContextDataset``: every (trajectory, start) pair is a sample, states are
normalised with the data set's statistics, returns-to-go are divided by a scale (1000), and windows that run past
the end of their trajectory are right-padded (states 0, actions -10, returns 0) with a False mask.
"""

from __future__ import annotations

import numpy as np
import torch

from rl.data.trajectories import Trajectory, returns_to_go, state_statistics

ACTION_PAD = -10.0


class ContextDataset(torch.utils.data.Dataset):
    """Every window of ``context_length`` steps starting at each timestep of each trajectory.

    Args:
        trajectories: the episodes.
        context_length (int): K. Default: 20.
        rtg_scale (float): returns-to-go are divided by it. Default: 1000.
        max_ep_len (int): size of the timestep embedding; longer trajectories are rejected. Default: 1000.
        state_mean, state_std (np.ndarray, optional): ``(S,)`` normalisation; computed from the data if None.

    Raises:
        ValueError: on an empty list or a trajectory longer than ``max_ep_len``.
    """

    def __init__(
        self,
        trajectories: list[Trajectory],
        context_length: int = 20,
        rtg_scale: float = 1000.0,
        max_ep_len: int = 1000,
        state_mean: np.ndarray | None = None,
        state_std: np.ndarray | None = None,
    ) -> None:
        if not trajectories:
            raise ValueError("ContextDataset needs at least one trajectory")
        longest = max(len(t) for t in trajectories)
        if longest > max_ep_len:
            raise ValueError(
                f"a trajectory has {longest} steps but the timestep embedding holds max_ep_len={max_ep_len}; "
                "raise --max-ep-len"
            )
        if state_mean is None or state_std is None:
            state_mean, state_std = state_statistics(trajectories)
        self.context_length = context_length
        self.rtg_scale = rtg_scale
        self.state_mean = np.asarray(state_mean, dtype=np.float32)
        self.state_std = np.asarray(state_std, dtype=np.float32)
        lengths = np.array([len(t) for t in trajectories])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.lengths = lengths
        states = np.concatenate([t.observations for t in trajectories])
        self.states = ((states - self.state_mean) / self.state_std).astype(np.float32)  # (total, S)
        self.actions = np.concatenate([t.actions for t in trajectories]).astype(np.float32)  # (total, A)
        self.rewards = np.concatenate([t.rewards for t in trajectories]).astype(np.float32)
        self.rtg = (np.concatenate([returns_to_go(t.rewards) for t in trajectories]) / rtg_scale).astype(np.float32)
        self.timesteps = np.concatenate([np.arange(n) for n in lengths])
        # sample i = window of trajectory window_traj[i] starting at step window_start[i]
        self.window_traj = np.repeat(np.arange(len(lengths)), lengths)
        self.window_start = self.timesteps.copy()

    @property
    def state_dim(self) -> int:
        return self.states.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    def __len__(self) -> int:
        return len(self.window_traj)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.batch(np.array([index])).items()}

    def batch(self, indices: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """The windows with the given sample indices, padded on the right.

        Args:
            indices: ``(B,)`` integers in ``[0, len(self))``.

        Returns:
            dict of CPU tensors: ``states (B, K, S)``, ``actions (B, K, A)``, ``rewards (B, K, 1)``,
            ``returns_to_go (B, K, 1)`` (already divided by ``rtg_scale``), ``timesteps (B, K)`` int64 and
            ``mask (B, K)`` bool (True = real step).
        """
        indices = np.asarray(indices, dtype=np.int64)
        traj = self.window_traj[indices]
        step = self.window_start[indices][:, None] + np.arange(self.context_length)[None, :]  # (B, K)
        mask = step < self.lengths[traj][:, None]
        flat = np.where(mask, self.offsets[traj][:, None] + step, 0)
        maskf = mask[..., None].astype(np.float32)
        states = self.states[flat] * maskf
        actions = np.where(mask[..., None], self.actions[flat], ACTION_PAD).astype(np.float32)
        return {
            "states": torch.from_numpy(states),
            "actions": torch.from_numpy(actions),
            "rewards": torch.from_numpy(self.rewards[flat][..., None] * maskf),
            "returns_to_go": torch.from_numpy(self.rtg[flat][..., None] * maskf),
            "timesteps": torch.from_numpy(np.where(mask, step, 0).astype(np.int64)),
            "mask": torch.from_numpy(mask),
        }
