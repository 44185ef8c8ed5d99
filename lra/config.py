"""Per-task settings: one JSON file per task in ``lra/configs/``, overridable from the command line.

The LRA values are those of the Primal-Attention LRA code (a fork of Nystromformer's ``lra_config.py``): a
2-layer, 2-head, width-64 pre-norm model for every task, AdamW with a linear one-cycle schedule, and the paper's
(s, eta) per task for PrimalFormer and Primal.+Trans. (Chen et al., NeurIPS 2023, appendix).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"
TASKS = tuple(sorted(p.stem for p in CONFIG_DIR.glob("*.json")))
PRIMAL_MODELS = {
    "primalformer": "primalformer",
    "primal": "primalformer",
    "primal+trans": "primal+trans",
    "primal+": "primal+trans",
}


def load_config(task: str, path: str | Path | None = None) -> dict[str, Any]:
    """The settings of ``task`` (or of the JSON file ``path``).

    Raises:
        ValueError: unknown task or unreadable file.
    """
    if path is None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; expected one of {list(TASKS)} or pass --config FILE")
        path = CONFIG_DIR / f"{task}.json"
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"config file {path} is not valid JSON: {error}") from error


def parse_value(text: str) -> Any:
    """A command-line value as JSON when it parses (numbers, true/false, lists), else as a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` assignments, e.g. ``train.lr=2e-4``; returns a new dict.

    Raises:
        ValueError: malformed assignment or a key that does not exist.
    """
    config = copy.deepcopy(config)
    for assignment in assignments:
        if "=" not in assignment:
            raise ValueError(f"--set expects section.key=value, got {assignment!r}")
        dotted, value = assignment.split("=", 1)
        *parents, key = dotted.split(".")
        node = config
        for parent in parents:
            if not isinstance(node.get(parent), dict):
                raise ValueError(f"--set {dotted}: {parent!r} is not a section of the config; sections: {list(node)}")
            node = node[parent]
        if key not in node:
            raise ValueError(f"--set {dotted}: unknown key {key!r}; known keys here: {sorted(node)}")
        node[key] = parse_value(value)
    return config


def primal_settings(config: dict[str, Any], attention: str) -> tuple[dict[str, Any], float]:
    """Options of the primal layers and the KSVD weight eta for ``attention``.

    PrimalFormer (``primal`` or ``primalformer``) and Primal.+Trans. (``primal+trans``) take (s, eta) from the
    task's table; any other name with primal layers gets the PrimalFormer values.
    """
    primal = config["primal"]
    model = PRIMAL_MODELS.get(attention.lower(), "primalformer")
    chosen = primal[model]
    options = {"low_rank": chosen["low_rank"], "rank_multi": primal["rank_multi"], "ksvd_reduction": primal["ksvd_reduction"]}
    return options, float(chosen["eta"])


def model_sequence_length(max_length: int) -> int:
    """The model's length: ``max_length`` rounded up to a power of two, as the reference (2000 -> 2048)."""
    length = 1
    while length < max_length:
        length *= 2
    return length
