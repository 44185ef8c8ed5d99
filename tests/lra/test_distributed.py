"""DDP through ``core.engine.distributed``: two gloo ranks on CPU train a few steps and end with equal weights."""

import json
import multiprocessing
import os
import socket
import traceback

import pytest
import torch
import torch.distributed as dist

from core.engine import DistributedContext, seed_everything
from lra.__main__ import build_parser
from lra.config import load_config
from lra.model import build_model
from lra.train import fit, per_rank_batch
from tests.lra.test_train import make_data


def train_rank(rank, world_size, port, out, data):
    """One DDP rank in a forked child: the real ``python -m lra train`` code path, then the final weights to disk."""
    try:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(port))  # fmt: skip
        torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
        args = build_parser().parse_args(
            ["train", "--task", "listops", "--attention", "primalformer", "--data", str(data), "--run-dir",
             str(out / "run"), "--steps", "4", "--batch-size", "4", "--eval-every", "2", "--eval-batches", "1",
             "--log-every", "1", "--threads", "1", "--set", "train.best_after_fraction=1.0"]
        )  # fmt: skip
        result, trainer = fit(args)
        torch.save({"state": trainer.module.state_dict(), "result": result}, out / f"rank{rank}.pt")
        dist.destroy_process_group()
    except BaseException:
        (out / f"rank{rank}.error").write_text(traceback.format_exc())
        os._exit(1)
    os._exit(0)


def launch(out, data, world_size=2):
    """Fork ``world_size`` ranks (forking skips re-importing torch, which dominates a spawned child's start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("fork")
    ranks = [context.Process(target=train_rank, args=(r, world_size, port, out, data)) for r in range(world_size)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
    for process in ranks:
        if process.is_alive():
            process.kill()
    errors = [f.read_text() for f in sorted(out.glob("rank*.error"))]
    return [process.exitcode for process in ranks], errors


def initial_state():
    """The weights every rank starts from (seed 42, as the worker's run)."""
    seed_everything(42)
    model, _, _ = build_model(load_config("listops"), "primalformer", 32)
    return model.state_dict()


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")
def test_two_gloo_ranks_end_with_identical_parameters(tmp_path):
    make_data("listops", tmp_path / "data")
    exitcodes, errors = launch(tmp_path, tmp_path / "data")
    assert exitcodes == [0, 0], "\n".join(errors) or f"exit codes {exitcodes}"
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    first, second = (r["state"] for r in ranks)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    start = initial_state()
    assert any(not torch.equal(start[name], first[name]) for name in first), "training left every weight unchanged"

    # rank 0 alone wrote the run folder, and its checkpoint holds the same weights
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=False)
    assert last["state"]["step"] == 4
    for name, value in last["trainer"]["model"].items():
        assert torch.equal(value, first[name]), name
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["processes"] == 2 and result["steps_done"] == 4
    assert result["test"] == ranks[1]["result"]["test"]  # both ranks report the metrics summed over the shards
    assert result["test"]["examples"] == 12  # every test example counted once
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3, 4]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "DDP 2 x 2 (gloo)" in log and log.count("test (") == 1


def test_global_batch_must_split_evenly():
    assert per_rank_batch(32, DistributedContext(rank=1, world_size=2)) == 16
    with pytest.raises(ValueError, match="does not split evenly over 4 processes"):
        per_rank_batch(6, DistributedContext(rank=0, world_size=4))
