"""Singular-value spectra of attention matrices (Primal-Attention, Chen et al., NeurIPS 2023, Figure 2).

The quantity plotted in the paper is the normalised cumulative singular-value curve
``c_k = sum_{i <= k} sigma_i / sum_i sigma_i`` of each layer's attention matrix: a curve that reaches 1 early
means a low-rank (sharply decaying) spectrum.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from core.analysis.layer_inputs import run_with_layer_inputs
from core.engine.plotting import pyplot, save_figure


def cumulative_singular_values(matrices: torch.Tensor) -> torch.Tensor:
    """Normalised cumulative singular values of a batch of matrices.

    Args:
        matrices (torch.Tensor): ``[..., N, M]``.

    Returns:
        torch.Tensor: ``[..., min(N, M)]``, non-decreasing, ending at 1 (0 rows for all-zero matrices).
    """
    sigma = torch.linalg.svdvals(matrices.double())
    total = sigma.sum(dim=-1, keepdim=True)
    return torch.cumsum(sigma, dim=-1) / total.clamp(min=torch.finfo(torch.float64).tiny)


@torch.no_grad()
def collect_attention_matrices(
    model: nn.Module, inputs: Iterable, layers: dict[str, nn.Module] | None = None
) -> dict[str, torch.Tensor]:
    """Run ``model(*batch)`` for each batch and record the attention matrix of every attention layer.

    Each attention module with an ``attention_matrix(x, key_padding_mask)`` method gets a forward pre-hook
    that recomputes its ``(B, H, N, N)`` matrix from the input it receives.

    Args:
        model: the model to run (in eval mode).
        inputs: batches; a tuple is unpacked into positional arguments, a dict into keyword arguments.
        layers: name -> module to record (default: every submodule that defines ``attention_matrix``).

    Returns:
        name -> ``(sum B, H, N, N)`` float tensor on the CPU.
    """
    if layers is None:
        layers = {name: m for name, m in model.named_modules() if hasattr(m, "attention_matrix") and name}
    records: dict[str, list[torch.Tensor]] = {name: [] for name in layers}

    def visit(name, layer, x, mask):
        records[name].append(layer.attention_matrix(x, mask).float().cpu())

    run_with_layer_inputs(model, inputs, layers, visit)
    return {name: torch.cat(mats) for name, mats in records.items() if mats}


def spectrum_summary(matrices: dict[str, torch.Tensor]) -> dict[str, dict[str, list[float]]]:
    """Mean and standard deviation (over samples and heads) of each layer's cumulative curve."""
    summary = {}
    for name, mats in matrices.items():
        curves = cumulative_singular_values(mats).flatten(0, -2)  # (samples * heads, K)
        summary[name] = {"mean": curves.mean(0).tolist(), "std": curves.std(0, unbiased=False).tolist()}
    return summary


def plot_spectra(summary: dict[str, dict[str, list[float]]], path: str | Path, title: str = "") -> Path:
    """Plot mean cumulative singular-value curves with a +/- std band; one line per layer."""
    plt = pyplot()

    fig, axis = plt.subplots(figsize=(5.5, 4))
    for name, curve in summary.items():
        mean = torch.tensor(curve["mean"])
        std = torch.tensor(curve["std"])
        k = torch.arange(len(mean))
        axis.plot(k, mean, label=name)
        axis.fill_between(k, (mean - std).clamp(0, 1), (mean + std).clamp(0, 1), alpha=0.2)
    axis.set_xlabel("singular value index k")
    axis.set_ylabel("normalised cumulative singular value")
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7)
    axis.set_title(title, fontsize=9)
    return save_figure(fig, path)
