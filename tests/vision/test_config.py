"""Configuration precedence and the shipped paper configurations."""

from __future__ import annotations

import json

import pytest

from vision.cli import build_parser
from vision.config import CONFIG_DIR, TrainConfig, config_from_args, config_from_dict


def parse(*argv):
    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_defaults_are_the_deit_recipe():
    config = TrainConfig()
    assert (config.lr_base, config.lr_base_size, config.weight_decay, config.epochs) == (5e-4, 512, 0.05, 300)
    assert (config.mixup, config.cutmix, config.smoothing, config.reprob) == (0.8, 1.0, 0.1, 0.25)
    assert (config.low_rank, config.rank_multi, config.eta) == (96, 10, 0.05)


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"epochs": 7, "low_rank": 12, "model_ema": False}))
    config = parse("--config", str(path), "--low-rank", "5", "--attention-options", '{"eps": 1e-5}')
    assert (config.epochs, config.low_rank, config.model_ema, config.attention_options) == (7, 5, False, {"eps": 1e-5})


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match="unknown settings \\['lowrank'\\]"):
        config_from_dict({"lowrank": 3})
    with pytest.raises(FileNotFoundError, match="shipped configs"):
        parse("--config", "no_such_config")


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_configs_load_by_name(path):
    config = parse("--config", path.stem)
    assert config.output_dir.endswith(path.stem)


def test_models_command_lists_attentions_and_primal_models(capsys):
    from vision.cli import main

    assert main(["models"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert "primal" in listing["attentions"] and "softmax" in listing["attentions"]
    assert "primal_deit_small_patch16_224" in listing["primal_models"]


def test_odd_batch_with_mixup_is_refused():
    from vision.train import build_criterion

    with pytest.raises(ValueError, match="even --batch-size"):
        build_criterion(TrainConfig(batch_size=5), num_classes=3)
