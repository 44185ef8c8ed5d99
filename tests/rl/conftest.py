"""Shared fixtures of the RL suite tests: one torch thread (the machines are shared), tiny data sets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rl.__main__ import build_parser
from rl.collect import main as collect_main


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_hopper(tmp_path_factory):
    """Six random Hopper-v5 episodes of at most 40 steps, written by ``python -m rl collect``."""
    path = tmp_path_factory.mktemp("data") / "hopper-tiny.hdf5"
    args = build_parser().parse_args(
        ["collect", "--env", "hopper", "--out", str(path), "--episodes", "6", "--behaviour", "random",
         "--max-episode-steps", "40", "--seed", "3", "--no-plot"]
    )
    collect_main(args)
    return path


@pytest.fixture
def make_arrays():
    """The :func:`synthetic_arrays` builder."""
    return synthetic_arrays


def synthetic_arrays(lengths=(3, 3, 2), state_dim=11, act_dim=3, seed=0) -> dict[str, np.ndarray]:
    """Flat D4RL arrays for episodes of the given lengths; the first ends in a terminal, the others in time-outs
    except the last, which the end of the file cuts."""
    rng = np.random.default_rng(seed)
    total = sum(lengths)
    terminals = np.zeros(total, dtype=bool)
    timeouts = np.zeros(total, dtype=bool)
    ends = np.cumsum(lengths) - 1
    terminals[ends[0]] = True
    timeouts[ends[1:-1]] = True
    return {
        "observations": rng.standard_normal((total, state_dim)).astype(np.float32),
        "actions": rng.uniform(-1, 1, (total, act_dim)).astype(np.float32),
        "rewards": rng.standard_normal(total).astype(np.float32),
        "terminals": terminals,
        "timeouts": timeouts,
    }
