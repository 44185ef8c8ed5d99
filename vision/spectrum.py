"""``python -m vision spectrum``: the singular-value spectra of trained models' attention (Primal-Attention, Chen
et al., NeurIPS 2023, Figure 2).

For each checkpoint, the attention matrices of the last canonical block and of the primal block(s) are recorded on
validation images (through ``core.analysis.spectrum``, which calls each block's ``attention_matrix``), and their
normalised cumulative singular-value curves ``sum_{i<=k} sigma_i / sum_i sigma_i`` are plotted with a +/- std band.
A curve that reaches 1 at small k is a low-rank attention matrix; the paper reports that the KSVD-regularised primal
layer of Primal.+DeiT-S is close to 1 from the first index, while DeiT-S's last layer starts near 0.8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from core.analysis.spectrum import collect_attention_matrices, plot_spectra, spectrum_summary
from core.engine import load_checkpoint
from vision.config import config_from_dict
from vision.data import build_dataset, build_transform, dataset_info
from vision.models import attention_name, build_model, primal_block_indices


def load_trained_model(path: str | Path, data_path: str | None = None) -> tuple[nn.Module, Any, Any]:
    """Rebuild a model from a ``best.pt`` or ``checkpoints/checkpoint-*.pt`` of ``python -m vision train``.

    Args:
        path: the checkpoint; its stored config says which model and dataset it was trained on.
        data_path: override the dataset folder stored in the checkpoint.

    Returns:
        ``(model in eval mode, TrainConfig, DatasetInfo)``.
    """
    saved = load_checkpoint(path)
    if "config" not in saved or "model" not in saved:
        raise ValueError(f"{path} is not a checkpoint of `python -m vision train` (needs 'model' and 'config' entries)")
    config = config_from_dict({**saved["config"], "pretrained_checkpoint": None})
    if data_path is not None:
        config.data_path = data_path
    dataset = build_dataset(config.dataset, config.data_path, "val")
    info = dataset_info(config.dataset, dataset)
    model = build_model(config, info.num_classes, info.in_chans, config.img_size or info.img_size)
    model.load_state_dict(saved["model"])
    return model.eval(), config, info


def analysed_blocks(model: nn.Module, which: str = "last") -> dict[str, nn.Module]:
    """Attention modules to analyse: ``last`` = the last canonical block and every primal block; ``all`` = every
    block whose attention defines ``attention_matrix``."""
    blocks = list(model.blocks)
    if which == "all":
        chosen = list(range(len(blocks)))
    elif which == "last":
        primal = primal_block_indices(model)
        canonical = [i for i in range(len(blocks)) if i not in primal]
        chosen = canonical[-1:] + primal
    else:
        raise ValueError(f"blocks must be 'last' or 'all', got {which!r}")
    return {f"L[{i}] {attention_name(blocks[i].attn)}": blocks[i].attn for i in chosen}


def spectrum_of_checkpoint(
    path: str | Path, num_images: int = 64, batch_size: int = 32, which: str = "last", data_path: str | None = None
) -> dict[str, dict[str, list[float]]]:
    """Mean and std of the cumulative singular-value curves of a checkpoint's chosen blocks on validation images.

    Returns:
        ``{"L[i] <attention>": {"mean": [...], "std": [...]}}``, curves of length N (tokens).
    """
    model, config, info = load_trained_model(path, data_path)
    img_size = config.img_size or info.img_size
    dataset = build_dataset(config.dataset, config.data_path, "val", transform=build_transform(False, img_size, info, config))
    subset = torch.utils.data.Subset(dataset, range(min(num_images, len(dataset))))
    images = (batch[0] for batch in DataLoader(subset, batch_size=batch_size))
    matrices = collect_attention_matrices(model, images, layers=analysed_blocks(model, which))
    return spectrum_summary(matrices)


def run_spectrum(
    checkpoints: list[str], labels: list[str] | None, output: str | Path, num_images: int = 64, which: str = "last",
    data_path: str | None = None,
) -> dict[str, Any]:
    """Spectra of one or more checkpoints in one plot (``<output>.png``) and one JSON (``<output>.json``)."""
    labels = labels or [Path(path).parent.name or Path(path).stem for path in checkpoints]
    if len(labels) != len(checkpoints):
        raise ValueError(f"got {len(labels)} labels for {len(checkpoints)} checkpoints")
    curves: dict[str, dict[str, list[float]]] = {}
    for label, path in zip(labels, checkpoints):
        for name, curve in spectrum_of_checkpoint(path, num_images, which=which, data_path=data_path).items():
            curves[f"{label} {name}"] = curve
    output = Path(output)
    figure = plot_spectra(curves, output.with_suffix(".png"), title="normalised cumulative singular values")
    first = {name: curve["mean"][0] for name, curve in curves.items()}
    result = {"checkpoints": dict(zip(labels, checkpoints)), "num_images": num_images, "first_index": first,
              "curves": curves, "plot": str(figure)}
    return result
