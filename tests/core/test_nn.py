"""Layers, positions, pooling and schedules."""

import math

import pytest
import torch

import core
from core.nn import (
    DecoderBlock,
    EncoderLayer,
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    build_layers,
    flatten_pool,
    mean_pool,
    primal_plus_schedule,
    primalformer_schedule,
    schedule_for_model,
)


def test_schedules():
    assert primalformer_schedule(2) == ["primal", "primal"]
    assert primal_plus_schedule(12, last=1) == ["softmax"] * 11 + ["primal"]
    assert schedule_for_model("primal+trans", 2) == ["softmax", "primal"]
    assert schedule_for_model("transformer", 3) == ["softmax"] * 3
    assert schedule_for_model("linear", 2) == ["linear", "linear"]
    with pytest.raises(ValueError, match="last 3 of 2"):
        primal_plus_schedule(2, last=3)


@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_layer_matches_its_formula(norm_first):
    torch.manual_seed(0)
    attn = core.build_attention("softmax", 16, 2)
    layer = EncoderLayer(attn, 16, 32, dropout=0.0, norm_first=norm_first).double().eval()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    a, f, n1, n2 = layer.attention, layer.ffn, layer.norm1, layer.norm2
    if norm_first:
        h = x + a(n1(x))
        expected = h + f(n2(h))
    else:
        h = n1(x + a(x))
        expected = n2(h + f(h))
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("norm_first", [True, False])
@pytest.mark.parametrize("name", ["softmax", "primal"])
def test_feed_forward_on_real_tokens_only_keeps_real_outputs_and_gradients(norm_first, name):
    torch.manual_seed(1)
    layers = []
    for skip in (False, True):
        torch.manual_seed(1)
        attn = core.build_attention(name, 16, 2)
        layers.append(EncoderLayer(attn, 16, 32, dropout=0.0, norm_first=norm_first, ffn_real_tokens_only=skip))
    full, skipping = (layer.double() for layer in layers)
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] + [False] * 5])
    outputs = [layer(x, key_padding_mask=mask) for layer in (full, skipping)]
    torch.testing.assert_close(outputs[1][mask], outputs[0][mask])
    # padded tokens skip the feed-forward block: post-norm gives norm2(h), pre-norm gives h
    h = skipping.norm1(x + skipping.attention(x, key_padding_mask=mask)) if not norm_first else None
    if h is not None:
        torch.testing.assert_close(outputs[1][~mask], skipping.norm2(h)[~mask])
    for out in outputs:
        out[mask].pow(2).sum().backward()
    for (pname, a), b in zip(full.named_parameters(), skipping.parameters()):
        torch.testing.assert_close(b.grad, a.grad, msg=pname)


def test_decoder_block_refuses_non_causal_attention():
    with pytest.raises(ValueError, match="causal"):
        DecoderBlock(core.build_attention("softmax", 16, 2), 16, 64)


@pytest.mark.parametrize("name", ["softmax", "primal", "linear"])
def test_decoder_stack_steps_equal_parallel_and_are_causal(name):
    torch.manual_seed(0)
    blocks = build_layers(primal_plus_schedule(2, base=name) if name != "primal" else ["primal"] * 2,
                          16, 2, 32, dropout=0.0, causal=True).double().eval()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    h = x
    for block in blocks:
        h = block(h)
    states = [None] * len(blocks)
    outs = []
    for t in range(9):
        y = x[:, t]
        for i, block in enumerate(blocks):
            y, states[i] = block.step(y, states[i])
        outs.append(y)
    torch.testing.assert_close(torch.stack(outs, 1), h)


def test_build_layers_passes_options_per_name():
    layers = build_layers(["softmax", "primal"], 16, 2, 32, attention_options={"primal": {"low_rank": 3}})
    assert layers[1].attention.low_rank == 3
    assert isinstance(layers[0], EncoderLayer)


def test_positions():
    x = torch.zeros(2, 6, 8)
    learned = LearnedPositionalEmbedding(10, 8)
    assert learned.weight.abs().max() <= 0.02
    torch.testing.assert_close(learned(x), learned.weight[:6].expand(2, 6, 8))
    with pytest.raises(ValueError, match="exceeds max_len"):
        learned(torch.zeros(1, 11, 8))
    sin = SinusoidalPositionalEncoding(10, 8)(x)
    pos, i = 3, 1  # PE(pos, 2i) = sin(pos / 10000^(2i/d))
    assert math.isclose(sin[0, pos, 2 * i].item(), math.sin(pos / 10000 ** (2 * i / 8)), rel_tol=1e-5)
    assert math.isclose(sin[0, pos, 2 * i + 1].item(), math.cos(pos / 10000 ** (2 * i / 8)), rel_tol=1e-5)


def test_pooling_ignores_padding():
    x = torch.arange(12.0).view(1, 4, 3)
    mask = torch.tensor([[True, True, False, False]])
    torch.testing.assert_close(mean_pool(x, mask), x[:, :2].mean(1))
    flat = flatten_pool(x, mask)
    assert flat.shape == (1, 12) and (flat[0, 6:] == 0).all()
