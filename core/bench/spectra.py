"""Singular-value spectra of every registered mechanism's attention matrix, for the core results page.

The curve is the normalised cumulative singular value ``c_k = sum_{i <= k} sigma_i / sum_i sigma_i`` of
Primal-Attention (Chen et al., NeurIPS 2023, Figure 2), taken here from a freshly initialised two-layer encoder
per mechanism on N(0, 1) tokens. It shows the rank each mechanism's construction allows (a Linformer or Nystrom
matrix has at most k or m directions; Primal-Attention's kernel ``phi(q) phi(k)^T`` at most the head width),
not what training makes of it: the trained curves of the paper's figure come from ``python -m vision spectrum``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from core.analysis.spectrum import collect_attention_matrices, spectrum_summary
from core.engine.plotting import pyplot, save_figure
from core.nn import build_layers


class _Encoder(nn.Module):
    """A stack of encoder layers called as ``model(x)``, so that the spectrum hooks see every layer."""

    def __init__(self, layers: nn.ModuleList) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def mechanism_spectra(names: list[str], *, dim: int = 256, heads: int = 4, length: int = 256, batch: int = 2,
                      depth: int = 2, seed: int = 0) -> dict[str, dict[str, list[float]]]:
    """Mean and std (over samples and heads) of the last layer's cumulative curve, per mechanism.

    Args:
        names: registry names; every one must define ``attention_matrix``.
        dim, heads: layer width D and heads H (head width D / H).
        length, batch: tokens N and samples B of the random input ``(B, N, D)``.
        depth: encoder layers; the curve is taken from the last one, so it sees a non-trivial input.

    Returns:
        name -> ``{"mean": [...], "std": [...]}`` of length N.
    """
    summaries = {}
    for name in tqdm(names, desc="spectra", unit="mechanism"):
        torch.manual_seed(seed)
        model = _Encoder(build_layers([name] * depth, dim, heads, 2 * dim, dropout=0.0))
        x = torch.randn(batch, length, dim)
        last = {f"layers.{depth - 1}.attention": model.layers[depth - 1].attention}
        matrices = collect_attention_matrices(model, [x], layers=last)
        summaries[name] = next(iter(spectrum_summary(matrices).values()))
    return summaries


def index_reaching(curve: list[float], level: float) -> int:
    """The smallest k (1-based) with ``c_k >= level``: how many singular directions carry that share."""
    for k, value in enumerate(curve, start=1):
        if value >= level - 1e-9:
            return k
    return len(curve)


def format_spectra(summaries: dict[str, dict[str, list[float]]]) -> str:
    """Markdown table: c_1 and the number of directions reaching 50 / 90 / 99 % per mechanism, sharpest first."""
    lines = ["| mechanism | c_1 | k (50 %) | k (90 %) | k (99 %) |", "|---|---:|---:|---:|---:|"]
    order = sorted(summaries, key=lambda name: (index_reaching(summaries[name]["mean"], 0.9), name))
    for name in order:
        mean = summaries[name]["mean"]
        ks = [index_reaching(mean, level) for level in (0.5, 0.9, 0.99)]
        lines.append(f"| {name} | {mean[0]:.2f} | " + " | ".join(str(k) for k in ks) + " |")
    return "\n".join(lines)


def plot_mechanism_spectra(summaries: dict[str, dict[str, list[float]]], path: str | Path, title: str) -> Path:
    """One mean curve per mechanism, legend beside the axes; colours repeat every ten curves, so line styles change."""
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(9, 5))
    styles = ["-", "--", ":"]
    for i, (name, curve) in enumerate(summaries.items()):
        axis.plot(range(1, len(curve["mean"]) + 1), curve["mean"], linestyle=styles[(i // 10) % 3], label=name)
    axis.set_xscale("log", base=2)
    axis.set_xlabel("singular value index k")
    axis.set_ylabel("normalised cumulative singular value c_k")
    axis.set_ylim(0, 1.02)
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    axis.set_title(title, fontsize=9)
    return save_figure(fig, path)
