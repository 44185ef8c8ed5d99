"""A suite's real sbatch script on the local SLURM cluster, in CPU mode with two ranks: the vision suite's
single-node script (torchrun over the node's two fake GPUs, gloo on CPU) trains a tiny Primal.+DeiT; the job
completes and both ranks agree on the result."""

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
                  "--workers", "0"], env)
    state = wait(job, env, timeout=600)
    text = log.read_text() if log.exists() else "(no log)"
    assert state == "COMPLETED", text[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2, result
    assert os.path.exists(out / "metrics.csv")
