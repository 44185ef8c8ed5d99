"""Named training configurations (``language/configs/*.json``): fairseq-train arguments for one paper setting.

A configuration is ``{"description": str, "fairseq_args": {flag: value}}``; ``true`` makes a bare flag, ``false``
or ``null`` drops it. ``wikitext103-primal`` is the official Primal-Attention WikiText-103 command (Chen et al.,
NeurIPS 2023, Table 7b); ``kjv-*`` are CPU-sized models for the offline KJV corpus.
"""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def available_configs() -> list[str]:
    """Names of the shipped configurations."""
    return sorted(path.stem for path in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str) -> dict:
    """A configuration by shipped name (e.g. ``wikitext103-primal``) or by path to a JSON file.

    Raises:
        FileNotFoundError: naming the shipped configurations.
        ValueError: when the file is not a configuration.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no configuration {name_or_path!r}: not a file and not one of {available_configs()} in {CONFIG_DIR}"
        )
    config = json.loads(path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("fairseq_args"), dict):
        raise ValueError(f"{path} is not a configuration: expected a JSON object with a 'fairseq_args' object")
    config.setdefault("description", "")
    config["name"] = path.stem
    return config


def parse_overrides(pairs: list[str]) -> dict:
    """``["lr=0.0005", "max-update=10", "fp16=true"]`` -> flag values (JSON-decoded where possible).

    Raises:
        ValueError: for an entry without ``=``.
    """
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects flag=value (e.g. lr=0.0005), got {pair!r}")
        key, value = pair.split("=", 1)
        key = key.strip().lstrip("-")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return overrides


def to_argv(fairseq_args: dict) -> list[str]:
    """Flags for fairseq-train from a ``{flag: value}`` mapping."""
    argv: list[str] = []
    for key, value in fairseq_args.items():
        if value is None or value is False:
            continue
        flag = "--" + key.lstrip("-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value)]
        else:
            argv += [flag, str(value)]
    return argv
