"""Engine pieces: atomic checkpoints, metric logs, seeding, distributed context."""

import json

import pytest
import torch

from core.engine import MetricLogger, latest_checkpoint, load_checkpoint, save_checkpoint, seed_everything, write_json
from core.engine.distributed import environment_rank


def test_checkpoint_round_trip_and_latest(tmp_path):
    for step in (1, 10, 2):
        save_checkpoint({"step": step, "w": torch.full((2,), float(step))}, tmp_path / f"ckpt_{step}.pt")
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "ckpt_10.pt"
    state = load_checkpoint(latest)
    assert state["step"] == 10 and torch.equal(state["w"], torch.full((2,), 10.0))
    assert not list(tmp_path.glob(".*tmp"))


def test_corrupt_and_missing_checkpoints_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    assert latest_checkpoint(tmp_path / "nowhere") is None


def test_metric_logger_writes_jsonl_and_csv_and_resumes(tmp_path):
    log = MetricLogger(tmp_path)
    log.log(epoch=0, loss=torch.tensor(1.5))
    log.log(epoch=1, loss=1.0, acc=0.5)
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"epoch": 0, "loss": 1.5}, {"epoch": 1, "loss": 1.0, "acc": 0.5}]
    assert (tmp_path / "metrics.csv").read_text().splitlines()[0] == "epoch,loss,acc"
    resumed = MetricLogger(tmp_path)
    assert len(resumed.load_existing()) == 2
    resumed.truncate(1)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    write_json({"x": torch.tensor(2.0), "nan": float("nan")}, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": 2.0, "nan": "nan"}


def test_seeding_reproduces_draws():
    seed_everything(3)
    a = torch.randn(4)
    seed_everything(3)
    assert torch.equal(a, torch.randn(4))


def test_environment_rank_reads_torchrun_then_slurm(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(key, raising=False)
    assert environment_rank() == (0, 1, 0)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    monkeypatch.setenv("SLURM_LOCALID", "1")
    assert environment_rank() == (3, 4, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert environment_rank() == (1, 2, 0)


def test_sweep_grid_expansion():
    from core.engine.sweep import expand_grid, parse_grid

    grid = parse_grid(["seed=1,2", "model=a,b"])
    assert expand_grid("run --model {model} --seed {seed}", grid) == [
        "run --model a --seed 1", "run --model a --seed 2", "run --model b --seed 1", "run --model b --seed 2"]
    with pytest.raises(ValueError, match="name=v1,v2"):
        parse_grid(["seed"])
