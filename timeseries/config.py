"""Run settings: shared defaults, one file per (data set, model) from the paper's table, then overrides.

Files live in ``timeseries/configs/`` (package data, found relative to this module): ``defaults.json`` and
``<Dataset>/<model>.json`` holding the paper's s (``low_rank``), eta, m (``rank_multi``), epochs and optimiser
(Chen et al., NeurIPS 2023, Table 1 settings from the official scripts).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
PAPER_MODELS = ("primalformer", "primal+trans", "transformer")
MODEL_ALIASES = {"primal+transformer": "primal+trans", "primal+": "primal+trans", "softmax": "transformer"}
SETTINGS = (
    "d_model",
    "num_heads",
    "ffn_dim",
    "num_layers",
    "dropout",
    "epochs",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "clip_norm",
    "eval_every",
    "low_rank",
    "rank_multi",
    "eta",
    "bucket_pool",
    "input_norm",
    "original_padding",
)
OPTIMIZERS = ("RAdam", "Adam", "AdamW")


def canonical_model(name: str) -> str:
    """"primal+transformer" -> "primal+trans", "softmax" -> "transformer"; other names unchanged."""
    return MODEL_ALIASES.get(name.lower(), name.lower() if name.lower() in PAPER_MODELS else name)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); expected an object of settings") from error
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of settings, got {type(data).__name__}")
    return data


def config_path(dataset: str, model: str) -> Path:
    """``configs/<dataset>/<model>.json``."""
    return CONFIG_DIR / dataset / f"{canonical_model(model)}.json"


def resolve_config(
    dataset: str, model: str, config_file: str | os.PathLike | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then the paper's file for (dataset, model), then ``config_file``, then non-None ``overrides``.

    A model without its own file (e.g. "flowformer" or any registry name) takes the data set's transformer file
    (epochs and optimiser; the primal settings do not apply to it).

    Raises:
        ValueError: on unknown setting names or an unknown optimiser.
    """
    config = _read(CONFIG_DIR / "defaults.json")
    own = config_path(dataset, model)
    fallback = config_path(dataset, "transformer")
    source = own if own.is_file() else fallback if fallback.is_file() else None
    if source is not None:
        config.update({k: v for k, v in _read(source).items() if k in SETTINGS})
    if config_file is not None:
        extra = _read(Path(config_file))
        unknown = sorted(set(extra) - set(SETTINGS) - {"dataset", "model", "source"})
        if unknown:
            raise ValueError(f"{config_file}: unknown settings {unknown}; known: {list(SETTINGS)}")
        config.update({k: v for k, v in extra.items() if k in SETTINGS})
    for key, value in (overrides or {}).items():
        if key not in SETTINGS:
            raise ValueError(f"unknown setting {key!r}; known: {list(SETTINGS)}")
        if value is not None:
            config[key] = value
    if config["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {config['optimizer']!r}")
    _check_ranges(config)
    config["config_file"] = str(source) if source is not None else None
    return config


def _check_ranges(config: dict[str, Any]) -> None:
    for key in ("d_model", "num_heads", "ffn_dim", "num_layers", "epochs", "batch_size", "eval_every", "low_rank"):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {config[key]!r}")
    if not isinstance(config["rank_multi"], int) or config["rank_multi"] < 1:
        raise ValueError(f"rank_multi must be a positive integer, got {config['rank_multi']!r}")
    for key in ("eta", "weight_decay", "clip_norm", "bucket_pool"):
        if config[key] < 0:
            raise ValueError(f"{key} must be >= 0, got {config[key]!r}")
    if not 0.0 <= config["dropout"] < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config['dropout']!r}")
    if config["lr"] <= 0:
        raise ValueError(f"lr must be > 0, got {config['lr']!r}")
    if config["d_model"] % config["num_heads"]:
        raise ValueError(f"d_model={config['d_model']} must be divisible by num_heads={config['num_heads']}")
