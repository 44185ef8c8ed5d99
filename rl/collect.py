"""``python -m rl collect``: offline data in the D4RL layout (Fu et al., 2020) from the real gymnasium MuJoCo
environments, with random actions and linear policies trained by ARS (see :mod:`rl.policies`), so that the
episode returns range from random to competent and a return-conditioned Decision Transformer has something to
choose from.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from core.engine import write_json
from rl.data.layout import write_d4rl_hdf5
from rl.data.trajectories import dataset_statistics, split_trajectories
from rl.envs import gym_id, make_env, task_key
from rl.policies import NoisyPolicy, RandomPolicy, load_policies, save_policies, train_ars

BEHAVIOURS = ("random", "trained", "mixed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="task: hopper, halfcheetah or walker2d")
    parser.add_argument("--env-version", default="v5", choices=("v4", "v5"), help="gymnasium MuJoCo version (default v5)")
    parser.add_argument("--out", required=True, type=Path, help="output .hdf5 file in the D4RL layout")
    parser.add_argument("--episodes", type=int, default=200, help="number of episodes to record (default 200)")
    parser.add_argument(
        "--behaviour", default="mixed", choices=BEHAVIOURS,
        help="random: uniform actions; trained: the final ARS policy; mixed (default): a --random-fraction of "
        "random episodes, the rest spread over ARS snapshots from early to late training",
    )
    parser.add_argument("--random-fraction", type=float, default=0.3, help="share of random episodes in mixed mode")
    parser.add_argument("--noise", type=float, default=0.1, help="Gaussian action noise added to trained policies")
    parser.add_argument("--ars-iterations", type=int, default=30, help="ARS updates when training a policy (default 30)")
    parser.add_argument("--ars-snapshots", type=int, default=6, help="policies kept along ARS training (default 6)")
    parser.add_argument(
        "--policy-file", type=Path, default=None,
        help="load trained policies from this .npz instead of training (default: train, save to <out>.policy.npz)",
    )
    parser.add_argument("--max-episode-steps", type=int, default=1000, help="time limit per episode (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the environment, policies and noise")
    parser.add_argument("--no-plot", action="store_true", help="skip the return histogram")


def collect_episode(env, policy, max_steps: int) -> dict[str, np.ndarray]:
    """One episode as D4RL arrays; the last step has ``terminals`` or ``timeouts`` set."""
    observation, _ = env.reset()
    rows: dict[str, list] = {key: [] for key in ("observations", "next_observations", "actions", "rewards",
                                                 "terminals", "timeouts")}
    for step in range(max_steps):
        action = np.asarray(policy(observation), dtype=np.float32)
        following, reward, terminated, truncated, _ = env.step(action)
        truncated = (truncated or step == max_steps - 1) and not terminated
        for key, value in zip(rows, (observation, following, action, reward, terminated, truncated)):
            rows[key].append(value)
        observation = following
        if terminated or truncated:
            break
    return {key: np.asarray(value) for key, value in rows.items()}


def behaviour_plan(args: argparse.Namespace, env, task: str) -> tuple[list, list[str]]:
    """The policy and label of every episode."""
    rng = np.random.default_rng(args.seed)
    random_policy = RandomPolicy(env.action_space.shape[0], rng)
    if args.behaviour == "random":
        return [random_policy] * args.episodes, ["random"] * args.episodes
    if args.policy_file is not None:
        trained = load_policies(args.policy_file)
    else:
        result = train_ars(env, task, iterations=args.ars_iterations, snapshots=args.ars_snapshots,
                           horizon=args.max_episode_steps, seed=args.seed)
        trained = result.snapshots
        save_policies(args.out.with_suffix(".policy.npz"), trained, result.returns)
    noisy = [NoisyPolicy(p, args.noise, rng) for p in trained]
    if args.behaviour == "trained":
        return [noisy[-1]] * args.episodes, [f"ars{len(trained) - 1}"] * args.episodes
    num_random = int(round(args.random_fraction * args.episodes))
    policies = [random_policy] * num_random
    labels = ["random"] * num_random
    for i in range(args.episodes - num_random):
        index = i * len(noisy) // max(args.episodes - num_random, 1)
        policies.append(noisy[index])
        labels.append(f"ars{index}")
    return policies, labels


def main(args: argparse.Namespace) -> dict:
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if not 0.0 <= args.random_fraction <= 1.0:
        raise ValueError(f"--random-fraction must lie in [0, 1], got {args.random_fraction}")
    task = task_key(args.env)
    env = make_env(task, args.env_version, seed=args.seed, max_episode_steps=args.max_episode_steps)
    policies, labels = behaviour_plan(args, env, task)
    episodes = []
    for policy in tqdm(policies, desc=f"collect {gym_id(task, args.env_version)}", unit="ep"):
        episodes.append(collect_episode(env, policy, args.max_episode_steps))
    env.close()
    arrays = {key: np.concatenate([e[key] for e in episodes]) for key in episodes[0]}
    attributes = {"env_id": gym_id(task, args.env_version), "task": task, "behaviour": args.behaviour,
                  "collector": "python -m rl collect", "seed": args.seed}
    write_d4rl_hdf5(args.out, arrays, attributes)
    statistics = dataset_statistics(split_trajectories(arrays))
    by_label: dict[str, list[float]] = {}
    for label, episode in zip(labels, episodes):
        by_label.setdefault(label, []).append(float(episode["rewards"].sum()))
    summary = {
        "path": str(args.out), **attributes, "statistics": statistics,
        "behaviours": {k: {"episodes": len(v), "return_mean": float(np.mean(v))} for k, v in by_label.items()},
    }
    write_json(summary, args.out.with_suffix(".json"))
    if not args.no_plot:
        from rl.plots import plot_return_histogram

        plot_return_histogram(by_label, args.out.with_suffix(".returns.png"), title=f"{args.out.name}")
    print(json.dumps(summary["statistics"], indent=2))
    print(f"wrote {args.out} ({statistics['transitions']} transitions, {statistics['episodes']} episodes)")
    return summary
