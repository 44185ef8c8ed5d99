"""Training: one step moves the weights and the KSVD parameters, a run writes its results, resume continues."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2

import vision  # noqa: F401
from vision.cli import main
from vision.config import TrainConfig
from vision.engine import SkipFirst, TrainState, evaluate, train_one_epoch
from vision.train import build_criterion, run


def tiny_config(folder, out, **overrides) -> TrainConfig:
    values = dict(
        dataset="folder", data_path=str(folder), img_size=32, model="primal_deit_tiny_patch16_224", patch_size=8,
        embed_dim=32, depth=2, num_heads=2, low_rank=4, rank_multi=2, batch_size=6, epochs=2, workers=0,
        warmup_epochs=0, lr=1e-3, output_dir=str(out), model_ema_decay=0.9, eval_ema=True, threads=1,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_one_step_updates_weights_and_ksvd_parameters(tiny):
    torch.manual_seed(0)
    model = timm.create_model("primal_deit_tiny_patch16_224", num_classes=3, low_rank=4, **tiny)
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-2, weight_decay=0.05)
    scheduler, _ = create_scheduler_v2(optimizer, num_epochs=1, step_on_epochs=False, updates_per_epoch=1)
    criterion, mixup = build_criterion(TrainConfig(), num_classes=3)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loader = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))]
    state = TrainState()
    metrics = train_one_epoch(model, loader, optimizer, scheduler, criterion, state, torch.device("cpu"), eta=0.05,
                              mixup=mixup, show_progress=False)
    assert state.step == 1 and metrics["ksvd_loss"] > 0 and metrics["images"] == 4
    for name in ("blocks.1.attn.mechanism.lambdas", "blocks.1.attn.mechanism.weight_e",
                 "blocks.0.attn.mechanism.q_proj.weight"):
        assert not torch.equal(before[name], dict(model.named_parameters())[name]), name
    result = evaluate(model, loader, torch.device("cpu"), show_progress=False)
    assert 0 <= result["top1"] <= result["top5"] <= 100 and result["images"] == 4
    assert all(len(m._ksvd_records) == 0 for m in model.modules() if hasattr(m, "_ksvd_records"))


def test_skip_first_resumes_the_same_order():
    sampler = torch.utils.data.DistributedSampler(range(10), num_replicas=1, rank=0, shuffle=True, seed=3)
    sampler.set_epoch(4)
    full = list(sampler)
    skipping = SkipFirst(sampler, 6)
    skipping.set_epoch(4)
    assert list(skipping) == full[6:] and len(skipping) == 4


def test_run_writes_results_and_resumes(image_folder, tmp_path):
    out = tmp_path / "run"
    first = run(tiny_config(image_folder, out, epochs=1))
    assert first["status"] == "complete" and first["epochs_completed"] == 1 and first["steps"] == 4
    for name in ("result.json", "metrics.jsonl", "metrics.csv", "log.txt", "curves.png", "best.pt"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "result.json").read_text())
    assert saved["primal_blocks"] == [1] and 0 <= saved["final"]["top1"] <= 100
    assert "ema_top1" in json.loads((out / "metrics.jsonl").read_text().splitlines()[0])

    second = run(tiny_config(image_folder, out, epochs=2))  # resume="auto" picks up the epoch-1 checkpoint
    assert second["epochs_completed"] == 2 and second["steps"] == 8
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]
    assert len(list((out / "checkpoints").glob("checkpoint-*.pt"))) == 2


def test_mid_epoch_checkpoint_resumes_where_it_stopped(image_folder, tmp_path):
    out = tmp_path / "mid"
    run(tiny_config(image_folder, out, epochs=1, save_every_steps=1, keep_checkpoints=10, eval_ema=False))
    checkpoints = sorted((out / "checkpoints").glob("checkpoint-*.pt"))
    for late in checkpoints[2:]:
        late.unlink()  # as if the job had been killed after two of four steps
    (out / "result.json").unlink()
    resumed = run(tiny_config(image_folder, out, epochs=1, eval_ema=False))
    assert resumed["steps"] == 4 and resumed["epochs_completed"] == 1
    assert resumed["train"]["batches"] == 2  # only the two missing batches were trained


def test_cli_train_and_errors(image_folder, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--dataset", "folder", "--data-path", str(image_folder), "--img-size", "32",
                 "--model", "deit_tiny_patch16_224", "--attention", "linear", "--patch-size", "8", "--embed-dim", "32",
                 "--depth", "1", "--num-heads", "2", "--batch-size", "8", "--epochs", "1", "--workers", "0",
                 "--mixup", "0", "--cutmix", "0", "--model-ema", "false", "--output-dir", str(out)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["status"] == "complete"
    assert main(["train", "--dataset", "folder", "--data-path", str(tmp_path / "nothing"), "--output-dir", str(out)]) == 2
    assert "ImageFolder layout" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--epochs", "many"])


def test_time_budget_stops_checkpoints_and_is_shared_across_resumes(image_folder, tmp_path):
    out = tmp_path / "budget"
    first = run(tiny_config(image_folder, out, epochs=5, max_minutes=1e-5, time_schedule=True, eval_ema=False))
    assert first["status"] == "time_budget_used" and first["steps"] == 1
    assert 0 <= first["final"]["top1"] <= 100
    assert len(list((out / "checkpoints").glob("checkpoint-*.pt"))) == 1
    again = run(tiny_config(image_folder, out, epochs=5, max_minutes=1e-5, time_schedule=True, eval_ema=False))
    assert again["steps"] == 1  # the budget was already used up


def test_time_schedule_needs_a_budget(image_folder, tmp_path):
    with pytest.raises(ValueError, match="max-minutes"):
        run(tiny_config(image_folder, tmp_path / "x", time_schedule=True))


def test_sigterm_checkpoints_and_the_same_command_resumes(image_folder, tmp_path, monkeypatch):
    import os
    import signal

    import vision.train as train_module

    out = tmp_path / "preempted"
    calls = {"n": 0}
    original = train_module.train_one_epoch

    def preempt_after_two_updates(*args, **kwargs):
        def on_step(state):
            calls["n"] += 1
            if calls["n"] == 2:
                os.kill(os.getpid(), signal.SIGTERM)  # as SLURM or torchrun would

        return original(*args, **{**kwargs, "on_step": on_step})

    monkeypatch.setattr(train_module, "train_one_epoch", preempt_after_two_updates)
    before = signal.getsignal(signal.SIGTERM)
    first = run(tiny_config(image_folder, out, epochs=1, eval_ema=False))
    assert first["status"] == "interrupted" and first["steps"] == 2
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    monkeypatch.setattr(train_module, "train_one_epoch", original)
    second = run(tiny_config(image_folder, out, epochs=1, eval_ema=False))
    assert second["status"] == "complete" and second["steps"] == 4 and second["train"]["batches"] == 2
