"""Capturing a model's queries, keys and values, and the accuracy sweep on saved (masked) activations."""

import pytest
import torch
from torch import nn

import core
from core.analysis.activations import collect_projections, save_projections
from core.bench.approx import load_activations, relative_error


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.first = core.build_attention("softmax", 8, 2)
        self.second = core.build_attention("linear", 8, 2)

    def forward(self, x, key_padding_mask=None):
        return self.second(self.first(x, key_padding_mask=key_padding_mask), key_padding_mask=key_padding_mask)


def test_records_every_layer_padded_across_batches_and_equal_to_its_projections():
    torch.manual_seed(0)
    model = TwoLayers()
    short = (torch.randn(2, 3, 8), torch.tensor([[True, True, True], [True, True, False]]))
    long = (torch.randn(1, 5, 8), torch.ones(1, 5, dtype=torch.bool))
    records = collect_projections(model, [short, long])
    assert list(records) == ["first", "second"]
    first = records["first"]
    assert first["q"].shape == (3, 2, 5, 4) and first["mask"].shape == (3, 5)
    assert first["mask"].tolist() == [[True] * 3 + [False] * 2, [True, True, False, False, False], [True] * 5]
    q, k, v = model.first.project_qkv(long[0])
    torch.testing.assert_close(first["k"][2:], k.detach())
    q, k, v = model.first.project_qkv(short[0])
    torch.testing.assert_close(first["v"][:2, :, :3], v.detach())
    assert first["q"][:2, :, 3:].abs().max() == 0  # padding added between batches is zero
    hidden = model.first(short[0], key_padding_mask=short[1])
    torch.testing.assert_close(records["second"]["q"][:2, :, :3], model.second.project_qkv(hidden)[0].detach())
    assert model.training  # the mode is restored


def test_save_and_load_round_trip_and_bad_input(tmp_path):
    torch.manual_seed(1)
    record = collect_projections(TwoLayers(), [(torch.randn(2, 4, 8),)])["first"]
    assert record["mask"].all()  # no mask given: every token is real
    path = save_projections(record, tmp_path / "sub" / "acts.pt")
    acts = load_activations(str(path))
    torch.testing.assert_close(acts["q"], record["q"].double())
    with pytest.raises(ValueError, match="lacks"):
        save_projections({"q": record["q"]}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="no attention layer"):
        collect_projections(nn.Linear(3, 3), [torch.randn(1, 3)])
    torch.save({"q": record["q"], "k": record["k"], "v": record["v"], "mask": record["mask"][:, :2]}, tmp_path / "bad.pt")
    with pytest.raises(SystemExit, match="mask has shape"):
        load_activations(str(tmp_path / "bad.pt"))
    with pytest.raises(SystemExit, match="no activations file"):
        load_activations(str(tmp_path / "missing.pt"))


def test_masked_error_ignores_padding_and_shrinks_with_features():
    g = torch.Generator().manual_seed(2)
    q, k, v = (0.3 * torch.randn(2, 2, 12, 8, generator=g, dtype=torch.float64) for _ in range(3))
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    acts = {"q": q, "k": k, "v": v, "mask": mask}
    error = relative_error(acts, "posrf", "orf", 64, "softmax", False, 2)
    noisy = {name: t.clone() for name, t in acts.items()}
    for name in "qkv":
        noisy[name][1, :, 7:] = 50.0  # padded tokens: neither the estimate nor the reference may see them
    assert relative_error(noisy, "posrf", "orf", 64, "softmax", False, 2) == pytest.approx(error, rel=1e-9)
    assert relative_error(acts, "posrf", "orf", 1024, "softmax", False, 2) < error
