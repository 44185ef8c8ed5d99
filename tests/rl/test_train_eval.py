"""One training step, a short run with resume, a short evaluation rollout, and the CLIs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.engine import load_checkpoint
from rl.__main__ import build_parser
from rl.__main__ import main as cli
from rl.config import TrainConfig, build_model
from rl.data import ContextDataset, load_dataset
from rl.envs import normalized_score, task_spec
from rl.evaluate import evaluate_returns
from rl.train import action_loss, train

TINY = {"embed_dim": 16, "num_heads": 2, "num_layers": 2, "context_length": 5, "batch_size": 8, "max_ep_len": 50,
        "warmup_steps": 2, "eval_every": 0, "eval_episodes": 1, "final_eval_episodes": 2, "targets": [100.0],
        "checkpoint_every": 1, "low_rank": 4, "device": "cpu"}


def test_one_training_step_lowers_the_loss_and_trains_the_primal_layer(tiny_hopper):
    torch.manual_seed(0)
    trajectories, _ = load_dataset(str(tiny_hopper))
    data = ContextDataset(trajectories, context_length=5, max_ep_len=50)
    config = TrainConfig(**{k: v for k, v in TINY.items() if k != "low_rank"})
    model = build_model(config, 11, 3, low_rank=4)
    batch = data.batch(np.arange(16))
    primal = model.blocks[-1].attention
    before = primal.weight_e.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def loss_value():
        predicted = model(batch["states"], batch["actions"], batch["returns_to_go"], batch["timesteps"], batch["mask"])
        from core.losses import ksvd_loss

        return action_loss(predicted, batch["actions"], batch["mask"]), ksvd_loss(model)

    model.eval()
    first, ksvd = loss_value()
    assert ksvd > 0
    optimizer.zero_grad()
    (first + 0.05 * ksvd).backward()
    optimizer.step()
    assert not torch.equal(primal.weight_e, before)
    second, _ = loss_value()
    assert second < first


def test_action_loss_ignores_padded_steps():
    predicted = torch.zeros(1, 3, 2)
    actions = torch.tensor([[[1.0, 1.0], [0.0, 0.0], [-10.0, -10.0]]])
    mask = torch.tensor([[True, True, False]])
    assert action_loss(predicted, actions, mask).item() == pytest.approx(0.5)


def test_short_run_resumes_and_writes_results(tiny_hopper, tmp_path):
    run = tmp_path / "run"
    config = TrainConfig(**TINY, dataset=str(tiny_hopper), max_steps=2, run_dir=str(run))
    result = train(config, progress=False)
    assert result["steps"] == 2 and result["schedule"] == ["softmax", "primal"]
    assert (run / "checkpoint.pt").is_file() and (run / "curves.png").is_file()
    saved = json.loads((run / "result.json").read_text())
    assert saved["final_evaluation"][0]["episodes"] == 2
    assert saved["dataset"]["episodes"] == 6
    state = load_checkpoint(run / "checkpoint.pt")
    assert state["step"] == 2 and state["meta"]["task"] == "hopper"
    resumed = train(TrainConfig(**TINY, dataset=str(tiny_hopper), max_steps=3, run_dir=str(run)), progress=False)
    assert resumed["steps"] == 3
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "action_loss" in r] == [2, 3]

    out = tmp_path / "eval.json"
    code = cli(["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--episodes", "1", "--targets", "50",
                "--device", "cpu", "--out", str(out)])
    assert code == 0
    evaluation = json.loads(out.read_text())
    assert evaluation["task"] == "hopper" and evaluation["evaluations"][0]["target"] == 50.0


def test_short_evaluation_rollout_reports_d4rl_scores():
    torch.manual_seed(0)
    model = build_model(TrainConfig(embed_dim=16, num_heads=2, num_layers=2, context_length=4, max_ep_len=12), 11, 3, 4)
    result = evaluate_returns(model, "hopper", 3600.0, episodes=2, state_mean=np.zeros(11, np.float32),
                              state_std=np.ones(11, np.float32), max_episode_steps=12, progress=False)
    assert len(result["returns"]) == 2 and all(1 <= n <= 12 for n in result["lengths"])
    assert np.isfinite(result["returns"]).all()
    assert result["normalized_mean"] == pytest.approx(float(np.mean(normalized_score(np.array(result["returns"]), "hopper"))))


def test_normalized_score_uses_the_d4rl_references():
    spec = task_spec("hopper-medium-replay-v2")
    assert normalized_score(spec.ref_min_score, "hopper") == pytest.approx(0.0)
    assert normalized_score(spec.ref_max_score, "Hopper-v5") == pytest.approx(100.0)
    assert normalized_score(4592.3, "walker2d") == pytest.approx(100.0)


@pytest.mark.parametrize("command", ["collect", "train", "evaluate", "benchmark"])
def test_every_command_explains_its_flags(command, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    assert "--" in text and "show this help" in text


def test_cli_errors_are_clear(tmp_path, capsys, tiny_hopper):
    assert cli(["train", "--dataset", str(tmp_path / "none.hdf5"), "--run-dir", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli(["train", "--dataset", str(tiny_hopper), "--model", "efficient", "--run-dir", str(tmp_path / "r")]) == 2
    assert "causal attention" in capsys.readouterr().err
    assert cli(["train", "--dataset", str(tiny_hopper), "--env", "walker2d", "--run-dir", str(tmp_path / "r")]) == 2
    assert "pass the right --env" in capsys.readouterr().err


def test_benchmark_compares_models_with_the_dataset_mean(tiny_hopper, tmp_path):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({**TINY, "max_steps": 2, "final_eval_episodes": 1}))
    out = tmp_path / "bench"
    assert cli(["benchmark", "--dataset", str(tiny_hopper), "--models", "primal+dt", "linear", "--minutes", "5",
                "--config", str(config), "--run-dir", str(out), "--no-report"]) == 0
    summary = json.loads((out / "benchmark.json").read_text())
    assert list(summary["models"]) == ["primal+dt", "linear"]
    mean = summary["dataset_return_mean"]
    assert mean == pytest.approx(np.mean([t.episode_return for t in load_dataset(str(tiny_hopper))[0]]))
    for row in summary["models"].values():
        assert row["steps"] == 2 and row["beats_dataset_mean"] == (row["return_mean"] > mean)
    assert (out / "benchmark.png").is_file() and "| linear | 2 |" in (out / "benchmark.md").read_text()
    assert (out / "primalplusdt" / "result.json").is_file() and (out / "linear" / "checkpoint.pt").is_file()
