"""Queries, keys and values of a trained model's attention layers, captured for offline analysis.

The random-feature accuracy sweep measures estimators against exact attention on these
(``python -m core.bench --approx --activations FILE``), as the Spectraformer and Performer papers do on trained
layers: a freshly initialised layer's activations are not the norms a trained model feeds its attention.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from core.analysis.layer_inputs import run_with_layer_inputs


def _padded_cat(parts: list[torch.Tensor], length: int, dim: int) -> torch.Tensor:
    """Concatenate along dim 0 after zero-padding dimension ``dim`` of every part to ``length``."""
    padded = []
    for part in parts:
        pad = [0, 0] * (part.dim() - dim - 1) + [0, length - part.shape[dim]]
        padded.append(torch.nn.functional.pad(part, pad))
    return torch.cat(padded)


def collect_projections(
    model: nn.Module, inputs: Iterable, layers: dict[str, nn.Module] | None = None
) -> dict[str, dict[str, torch.Tensor]]:
    """Run ``model`` on each batch and record what every attention layer projects from its input.

    Each layer gets a forward pre-hook calling its ``project_qkv(x)`` on the input it receives, with the
    ``key_padding_mask`` it is given (all tokens real when it gets none). Batches of different lengths are padded
    to the longest (the padding marked in the mask).

    Args:
        model: the model to run (in eval mode while recording).
        inputs: batches; a tuple is unpacked into positional arguments, a dict into keyword arguments.
        layers: name -> module to record (default: every submodule with ``project_qkv`` and a value projection).

    Returns:
        name -> ``{"q", "k", "v": (sum B, H, N, d) float32 on the CPU, "mask": (sum B, N) bool}``.
    """
    if layers is None:
        layers = {name: m for name, m in model.named_modules()
                  if name and hasattr(m, "project_qkv") and getattr(m, "v_proj", None) is not None}
    if not layers:
        raise ValueError("the model has no attention layer with project_qkv and a value projection to record")
    records: dict[str, list[tuple[torch.Tensor, ...]]] = {name: [] for name in layers}

    def visit(name, layer, x, mask):
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        q, k, v = layer.project_qkv(x)
        records[name].append(tuple(t.float().cpu() for t in (q, k, v)) + (mask.bool().cpu(),))

    run_with_layer_inputs(model, inputs, layers, visit)
    out = {}
    for name, parts in records.items():
        if not parts:
            continue
        length = max(part[3].shape[1] for part in parts)
        out[name] = {key: _padded_cat([part[i] for part in parts], length, dim=2 if i < 3 else 1)
                     for i, key in enumerate(("q", "k", "v", "mask"))}
    return out


def save_projections(record: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write one layer's ``{"q", "k", "v", "mask"}`` with ``torch.save`` (the format of ``--activations``)."""
    missing = [key for key in ("q", "k", "v", "mask") if key not in record]
    if missing:
        raise ValueError(f"record lacks {missing}; expected the output of collect_projections for one layer")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: record[key] for key in ("q", "k", "v", "mask")}, path)
    return path
