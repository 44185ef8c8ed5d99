"""Padding never reaches a real step's output: the mask flows into every attention of the classifier."""

from __future__ import annotations

import pytest
import torch

import core
from core.nn import schedule_for_model
from timeseries.model import UEAClassifier

MAX_LEN = 12


def _model(schedule, mask_attention=True, seed=0):
    torch.manual_seed(seed)
    options = {"primal": {"low_rank": 4, "rank_multi": 2, "max_seq_len": MAX_LEN}}
    model = UEAClassifier(3, 4, MAX_LEN, schedule, d_model=32, num_heads=4, ffn_dim=64, dropout=0.0,
                          attention_options={k: v for k, v in options.items() if k in schedule},
                          mask_attention=mask_attention)
    return model.eval()


def _batch(seed=1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(3, MAX_LEN, 3, generator=generator)
    lengths = torch.tensor([MAX_LEN, 7, 4])
    mask = torch.arange(MAX_LEN)[None] < lengths[:, None]
    return x, mask, lengths


MASKABLE = [name for name in core.list_attentions() if core.attention_info(name).key_padding_mask]


@pytest.mark.parametrize("schedule", [["primal", "primal"], ["softmax", "primal"]] + [[name] for name in MASKABLE])
def test_padding_content_and_trimming_do_not_change_logits(schedule):
    model = _model(schedule)
    x, mask, lengths = _batch()
    reference = model(x * mask[..., None], mask)
    garbage = x + 50.0 * (~mask[..., None]) * torch.randn_like(x)
    torch.testing.assert_close(model(garbage, mask), reference, rtol=1e-4, atol=1e-4)
    # series 1 and 2 alone, cut to their longest real step, give the same logits as inside the full batch
    short = slice(1, 3)
    trimmed = model(x[short, :7] * mask[short, :7, None], mask[short, :7])
    torch.testing.assert_close(trimmed, reference[short], rtol=1e-4, atol=1e-4)


def test_without_the_mask_padding_leaks_into_attention():
    """The check above can fail: the official unmasked setting lets padded steps change real outputs."""
    model = _model(schedule_for_model("primalformer", 2), mask_attention=False)
    x, mask, _ = _batch()
    garbage = x + 50.0 * (~mask[..., None]) * torch.randn_like(x)
    assert not torch.allclose(model(garbage, mask), model(x * mask[..., None], mask), atol=1e-3)


def test_attention_receives_the_mask(monkeypatch):
    model = _model(["softmax", "primal"])
    seen = []
    for layer in model.layers:
        original = layer.attention.forward

        def spy(x, key_padding_mask=None, _original=original):
            seen.append(key_padding_mask)
            return _original(x, key_padding_mask=key_padding_mask)

        monkeypatch.setattr(layer.attention, "forward", spy)
    x, mask, _ = _batch()
    model(x, mask)
    assert len(seen) == 2 and all(m is not None and torch.equal(m, mask) for m in seen)


def test_mechanisms_without_mask_support_refuse_instead_of_ignoring():
    unmaskable = [name for name in core.list_attentions() if not core.attention_info(name).key_padding_mask]
    if not unmaskable:
        pytest.skip("every registered mechanism honours key padding masks")
    x, mask, _ = _batch()
    for name in unmaskable:
        with pytest.raises((ValueError, NotImplementedError)):
            _model([name, name])(x, mask)
