"""Suites' real sbatch scripts on the local SLURM cluster, in CPU mode with two ranks (torchrun over the node's two
fake GPUs, gloo on CPU): the vision single-node script trains a tiny Primal.+DeiT, the rl single-node script a tiny
Primal.+DT; each job completes and both ranks took part in the same data-parallel run."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cluster.slurm_utils import submit, wait

ROOT = Path(__file__).resolve().parents[2]


def tiny_image_folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, count in (("train", 8), ("val", 4)):
        for index, name in enumerate(("a", "b")):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = np.clip(index * 120 + 60 + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_vision_single_node_script_runs_two_ranks(slurm_cluster, tmp_path):
    pytest.importorskip("timm", reason="the vision suite needs timm")
    data = tiny_image_folder(tmp_path / "images")
    out = tmp_path / "run"
    config = {
        "dataset": "folder", "img_size": 32, "model": "primal_deit_tiny_patch16_224", "patch_size": 8, "embed_dim": 32,
        "depth": 2, "num_heads": 2, "low_rank": 4, "rank_multi": 2, "batch_size": 4, "epochs": 1, "warmup_epochs": 0,
        "output_dir": str(out), "threads": 1,
    }
    config_path = tmp_path / "tiny.json"
    config_path.write_text(json.dumps(config))
    log = tmp_path / "job.out"
    env = {**slurm_cluster, "PYTHON": sys.executable}
    job = submit(["--cpus-per-task=2", "--gpus-per-node=2", "--time=10", f"--output={log}", f"--chdir={ROOT}",
                  str(ROOT / "vision" / "slurm" / "train_single_node.sbatch"), str(config_path), str(data),
                  "--workers", "0"], env, cwd=str(ROOT))
    state = wait(job, env, timeout=600)
    text = log.read_text() if log.exists() else "(no log)"
    assert state == "COMPLETED", text[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2, result
    assert os.path.exists(out / "metrics.csv")


def test_rl_single_node_script_runs_two_ranks(slurm_cluster, tmp_path):
    pytest.importorskip("gymnasium", reason="the rl suite needs gymnasium[mujoco]")
    from rl.__main__ import build_parser
    from rl.collect import main as collect_main

    data = tmp_path / "hopper.hdf5"
    collect_main(build_parser().parse_args(
        ["collect", "--env", "hopper", "--out", str(data), "--episodes", "6", "--behaviour", "random",
         "--max-episode-steps", "40", "--seed", "3", "--no-plot"]))
    config = {"context_length": 5, "embed_dim": 16, "num_layers": 1, "num_heads": 1, "batch_size": 4, "max_steps": 20,
              "warmup_steps": 1, "eval_every": 0, "final_eval_episodes": 1, "max_ep_len": 40, "targets": [100.0],
              "checkpoint_every": 10, "device": "cpu"}
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    run_dir, log = tmp_path / "run", tmp_path / "job.out"
    # INFO debug with the C++ INFO log records each rank's DDP initialisation and world size. (DETAIL, which would
    # also fingerprint every collective, crashes torch 2.14.1 inside DDP's construction logging on a fresh install:
    # SIGSEGV in Logger.set_construction_data_and_log.)
    env = {**slurm_cluster, "PYTHON": sys.executable, "TORCH_DISTRIBUTED_DEBUG": "INFO", "TORCH_CPP_LOG_LEVEL": "INFO"}
    job = submit(["--cpus-per-task=2", "--gpus-per-node=2", "--time=10", f"--output={log}",
                  str(ROOT / "rl" / "slurm" / "train.sbatch"), str(data), "primal+dt", "--config",
                  str(tmp_path / "tiny.json"), "--run-dir", str(run_dir)], env, cwd=str(ROOT))
    state = wait(job, env, timeout=600)
    text = log.read_text() if log.exists() else "(no log)"
    tail = "\n".join(line for line in text.splitlines() if "c10d - trace" not in line)[-3000:]
    assert state == "COMPLETED", tail
    for rank in (0, 1):
        assert f"[Rank {rank}]: DDP Initialized with" in text, tail
    assert "world_size: 2" in text, tail
    assert text.count("results in ") == 1, tail  # only rank 0 evaluates and reports
    assert json.loads((run_dir / "result.json").read_text())["steps"] == 20
