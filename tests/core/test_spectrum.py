"""Spectrum tools against matrices whose singular values are known."""

import torch

import core
from core.analysis.spectrum import collect_attention_matrices, cumulative_singular_values, plot_spectra, spectrum_summary
from core.nn import build_layers


def test_cumulative_curve_of_known_spectrum():
    u, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.float64))
    sigma = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.0], dtype=torch.float64)
    curve = cumulative_singular_values(u @ torch.diag(sigma) @ v.T)
    torch.testing.assert_close(curve, torch.tensor([0.4, 0.7, 0.9, 1.0, 1.0], dtype=torch.float64))


def test_rank_one_attention_is_one_at_first_index():
    a = torch.full((1, 1, 6, 6), 1 / 6)  # uniform attention has a single singular direction
    assert abs(cumulative_singular_values(a)[0, 0, 0].item() - 1.0) < 1e-6


def test_collect_from_a_model_and_plot(tmp_path):
    layers = build_layers(["softmax", "primal"], 16, 2, 32, dropout=0.0)

    class Stack(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = layers

        def forward(self, x, mask=None):
            for layer in self.layers:
                x = layer(x, key_padding_mask=mask)
            return x

    x = torch.randn(3, 7, 16)
    mats = collect_attention_matrices(Stack(), [(x,)])
    assert set(mats) == {"layers.0.attention", "layers.1.attention"}
    expected = layers[0].attention.attention_matrix(layers[0].norm1(x))
    torch.testing.assert_close(mats["layers.0.attention"], expected)
    summary = spectrum_summary(mats)
    assert len(summary["layers.0.attention"]["mean"]) == 7
    assert plot_spectra(summary, tmp_path / "s.png").stat().st_size > 0
    assert core.ksvd_loss(layers) >= 0
