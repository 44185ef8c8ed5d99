"""Return-conditioned rollouts of a Decision Transformer (Chen et al., 2021) in gymnasium MuJoCo, scored with
the D4RL normalised score as in Primal.+DT (Chen et al., NeurIPS 2023).

The agent starts from a target return R_1 = target / scale, and after each reward r_t conditions on
R_{t+1} = R_t - r_t / scale. Each action comes from the last K steps of the episode (no padding). Episodes run
side by side, one batched forward pass per environment step.

``python -m rl evaluate --checkpoint RUN/checkpoint.pt`` evaluates a trained run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.engine import load_checkpoint, select_device, write_json
from core.losses import clear_ksvd
from rl.envs import make_env, normalized_score, task_spec


@torch.no_grad()
def evaluate_returns(
    model: torch.nn.Module,
    task: str,
    target_return: float,
    episodes: int,
    state_mean: np.ndarray,
    state_std: np.ndarray,
    rtg_scale: float = 1000.0,
    env_version: str = "v5",
    seed: int = 0,
    max_episode_steps: int = 1000,
    progress: bool = True,
) -> dict:
    """Roll out ``episodes`` episodes conditioned on ``target_return``.

    Args:
        model: a :class:`rl.model.DecisionTransformer` (its device is used).
        task: "hopper", "halfcheetah" or "walker2d".
        target_return: the desired episode return (unscaled).
        episodes: number of episodes, run as one batch.
        state_mean, state_std: ``(S,)`` normalisation of the training data.
        rtg_scale: the training scale of returns-to-go.
        env_version: gymnasium version "v5" or "v4".
        seed: episode i resets with ``seed + 100 + i`` (the DT code's ``seed + 100``).
        max_episode_steps: time limit (at most the model's ``max_ep_len``).
        progress: show a tqdm bar over environment steps.

    Returns:
        dict with ``target``, per-episode ``returns`` and ``lengths``, ``return_mean``, ``return_std``,
        ``normalized_mean`` and ``normalized_std`` (D4RL score x 100).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    max_episode_steps = min(max_episode_steps, model.max_ep_len)
    envs = [make_env(task, env_version, max_episode_steps=max_episode_steps) for _ in range(episodes)]
    observations = np.stack([env.reset(seed=seed + 100 + i)[0] for i, env in enumerate(envs)])
    mean = torch.as_tensor(state_mean, device=device)
    std = torch.as_tensor(state_std, device=device)
    k = model.context_length
    states = torch.zeros(episodes, 0, model.state_dim, device=device)
    actions = torch.zeros(episodes, 0, model.act_dim, device=device)
    rtg = torch.zeros(episodes, 0, 1, device=device)
    timesteps = torch.zeros(episodes, 0, dtype=torch.long, device=device)
    current_rtg = torch.full((episodes, 1, 1), target_return / rtg_scale, device=device)
    returns = np.zeros(episodes)
    lengths = np.zeros(episodes, dtype=int)
    active = np.ones(episodes, dtype=bool)
    bar = tqdm(range(max_episode_steps), desc=f"eval {task} target {target_return:g}", unit="step", disable=not progress,
               leave=False)
    for t in bar:
        state = (torch.as_tensor(observations, dtype=torch.float32, device=device) - mean) / std
        states = torch.cat([states, state[:, None]], dim=1)[:, -k:]
        actions = torch.cat([actions, torch.zeros(episodes, 1, model.act_dim, device=device)], dim=1)[:, -k:]
        rtg = torch.cat([rtg, current_rtg], dim=1)[:, -k:]
        timesteps = torch.cat([timesteps, torch.full((episodes, 1), t, dtype=torch.long, device=device)], dim=1)[:, -k:]
        index = torch.as_tensor(np.flatnonzero(active), device=device)
        chosen = model.get_action(states[index], actions[index], rtg[index], timesteps[index])  # (E_active, A)
        actions[index, -1] = chosen
        rewards = torch.zeros(episodes, device=device)
        for i, action in zip(index.tolist(), chosen.cpu().numpy()):
            observations[i], reward, terminated, truncated, _ = envs[i].step(action)
            returns[i] += reward
            lengths[i] += 1
            rewards[i] = float(reward)
            if terminated or truncated:
                active[i] = False
        current_rtg = current_rtg - rewards[:, None, None] / rtg_scale
        bar.set_postfix(active=int(active.sum()), ret=f"{returns.mean():.0f}")
        if not active.any():
            break
    for env in envs:
        env.close()
    clear_ksvd(model)
    model.train(was_training)
    scores = normalized_score(returns, task)
    return {
        "target": float(target_return),
        "episodes": episodes,
        "returns": returns.tolist(),
        "lengths": lengths.tolist(),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "normalized_mean": float(scores.mean()),
        "normalized_std": float(scores.std()),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint.pt written by `python -m rl train`")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per target (default 10; the paper: 100)")
    parser.add_argument("--targets", type=float, nargs="+", default=None,
                        help="target returns (default: the run's targets, e.g. 3600 1800 for hopper)")
    parser.add_argument("--env-version", default=None, choices=("v4", "v5"), help="gymnasium version (default: the run's)")
    parser.add_argument("--seed", type=int, default=0, help="episode i resets with seed + 100 + i")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", type=Path, default=None, help="result JSON (default: evaluation.json beside the checkpoint)")


def main(args: argparse.Namespace) -> dict:
    from rl.train import restore_model

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    state = load_checkpoint(args.checkpoint)
    device = select_device(args.device)
    model, config, meta = restore_model(state, device)
    targets = args.targets or config.targets or list(task_spec(meta["task"]).targets)
    version = args.env_version or config.env_version
    results = []
    for target in targets:
        result = evaluate_returns(model, meta["task"], target, args.episodes, meta["state_mean"], meta["state_std"],
                                  config.rtg_scale, version, args.seed, config.max_ep_len)
        print(f"target {target:g}: return {result['return_mean']:.1f} +- {result['return_std']:.1f}, "
              f"normalised {result['normalized_mean']:.1f}")
        results.append(result)
    summary = {"checkpoint": str(args.checkpoint), "task": meta["task"], "env_version": version,
               "model": config.model, "step": state.get("step"), "evaluations": results}
    out = args.out or args.checkpoint.with_name("evaluation.json")
    write_json(summary, out)
    print(json.dumps({"results": [{k: r[k] for k in ("target", "return_mean", "normalized_mean")} for r in results]}))
    return summary
