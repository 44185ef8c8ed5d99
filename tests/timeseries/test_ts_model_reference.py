"""The whole UEA classifier against a float64 reference assembled step by step from section 2.1 of primal.md.

The reference is written from the description (input projection times sqrt(d), learned positions, post-norm layers
with a GELU feed-forward block, a final LayerNorm, GELU, padded steps zeroed, one linear layer over the flattened
steps), with the explicit softmax of ``tests/core/test_softmax.py`` and the primal transcription of
``tests/core/test_primal.py``.
Two padding modes:

- the official one (``mask_attention=False``): the padded batch goes through the layers unmasked; the mask acts only
  at the head, and the primal layer samples over all L steps;
- the default (masked attention): every series behaves as if it were processed alone, unpadded.

Logits, the KSVD term and the gradients of the training loss (cross-entropy + eta * KSVD) must match.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import core
from core.attention.primal import PrimalAttention
from tests.core.test_primal import ksvd_transcription, transcription
from tests.core.test_softmax import explicit_softmax
from timeseries.model import UEAClassifier

MAX_LEN, CHANNELS, CLASSES, WIDTH, HEADS = 12, 3, 4, 32, 4
LENGTHS = [12, 7, 4]  # n - 1 prime to the 8 samples - 1: linspace indices are exact
ETA = 0.3


def _layer_norm(x, norm):
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


def _softmax_attention(m, x):
    """Per head softmax(q k^T / sqrt(p)) v over all steps of ``x: (B, n, d)``, then the output projection."""
    b, n, d = x.shape

    def heads(proj):  # (B, n, d) -> (B, H, n, p)
        return (x @ proj.weight.T + proj.bias).view(b, n, HEADS, d // HEADS).transpose(1, 2)

    mixed = explicit_softmax(heads(m.q_proj), heads(m.k_proj), heads(m.v_proj))
    return mixed.transpose(1, 2).reshape(b, n, d) @ m.out_proj.weight.T + m.out_proj.bias


def _encode(model, x):
    """Reference encoder on ``x: (B, n, C)`` with no mask anywhere; also the primal layers' KSVD terms."""
    n = x.shape[1]
    h = (x @ model.input_proj.weight.T + model.input_proj.bias) * math.sqrt(WIDTH) + model.positions.weight[:n]
    ksvd = []
    for layer in model.layers:
        attention = layer.attention
        if isinstance(attention, PrimalAttention):
            mixed, e, r = transcription(attention, h, causal=False)
            ksvd.append((attention, e, r))
        else:
            mixed = _softmax_attention(attention, h)
        h = _layer_norm(h + mixed, layer.norm1)
        ffn = layer.ffn
        inner = F.gelu(h @ ffn.fc1.weight.T + ffn.fc1.bias)
        h = _layer_norm(h + inner @ ffn.fc2.weight.T + ffn.fc2.bias, layer.norm2)
    return F.gelu(_layer_norm(h, model.final_norm)), ksvd


def _head(model, features, mask):
    flat = (features * mask[..., None]).reshape(features.shape[0], -1)
    return flat @ model.head.weight.T + model.head.bias


def _ksvd_loss(ksvd):
    """Mean over primal layers of the batch mean of ``(E + R - T)^2``; 0 without primal layers."""
    terms = [ksvd_transcription(m, e, r) for m, e, r in ksvd]
    return torch.stack(terms).mean() if terms else torch.zeros((), dtype=torch.float64)


def reference(model, x, mask, official):
    """Logits ``(B, K)`` and the batch's KSVD loss."""
    if official:
        features, ksvd = _encode(model, x)
        return _head(model, features, mask), _ksvd_loss(ksvd)
    logits, losses = [], []
    for i, n in enumerate(mask.sum(1).tolist()):
        features, ksvd = _encode(model, x[i : i + 1, :n])
        padded = F.pad(features, (0, 0, 0, x.shape[1] - n))
        logits.append(_head(model, padded, mask[i : i + 1]))
        losses.append(_ksvd_loss(ksvd))
    return torch.cat(logits), torch.stack(losses).mean()


def _model(schedule, official):
    torch.manual_seed(0)
    options = {"primal": {"low_rank": 4, "rank_multi": 2, "max_seq_len": MAX_LEN, "ksvd_reduction": "sample",
                          "original_padding": official}}
    model = UEAClassifier(CHANNELS, CLASSES, MAX_LEN, schedule, d_model=WIDTH, num_heads=HEADS, ffn_dim=48,
                          dropout=0.0, attention_options={k: v for k, v in options.items() if k in schedule},
                          mask_attention=not official)
    with torch.no_grad():  # move LayerNorm and Lambda away from their initial values
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.double().train()


def _padded_batch():
    """``x: (3, L, C)`` float64 zero-padded to the lengths in LENGTHS, and its mask ``(3, L)``."""
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(len(LENGTHS), MAX_LEN, CHANNELS, generator=generator, dtype=torch.float64)
    mask = torch.arange(MAX_LEN)[None] < torch.tensor(LENGTHS)[:, None]
    return x * mask[..., None], mask  # zero padding, as the data pipeline writes it


@pytest.mark.parametrize("official", [True, False], ids=["official-padding", "masked"])
@pytest.mark.parametrize("schedule", [["softmax", "primal"], ["primal", "primal"], ["softmax", "softmax"]],
                         ids=["primal+trans", "primalformer", "transformer"])
def test_classifier_and_loss_gradients_match_the_reference(schedule, official):
    model = _model(schedule, official)
    x, mask = _padded_batch()
    labels = torch.tensor([0, 3, 1])
    params = list(model.parameters())

    core.losses.clear_ksvd(model)
    logits = model(x, mask)
    ksvd = core.ksvd_loss(model)
    got = torch.autograd.grad(F.cross_entropy(logits, labels) + ETA * ksvd, params)

    want_logits, want_ksvd = reference(model, x, mask, official)
    want = torch.autograd.grad(F.cross_entropy(want_logits, labels) + ETA * want_ksvd, params)

    torch.testing.assert_close(logits, want_logits)
    torch.testing.assert_close(ksvd.double(), want_ksvd)  # 0 (float32) without primal layers
    assert ("primal" in schedule) == bool(want_ksvd.abs() > 0)
    for (name, _), g, w in zip(model.named_parameters(), got, want):
        torch.testing.assert_close(g, w, msg=lambda text, name=name: f"{name}: {text}")


def test_the_reference_can_tell_the_padding_modes_apart():
    """The two references differ on a padded batch, so each check above pins its own mode down."""
    model = _model(["softmax", "primal"], official=True)
    x, mask = _padded_batch()
    official, _ = reference(model, x, mask, official=True)
    alone, _ = reference(model, x, mask, official=False)
    assert torch.allclose(official[0], alone[0])  # the full-length series has no padding
    assert not torch.allclose(official[1:], alone[1:], atol=1e-6)
