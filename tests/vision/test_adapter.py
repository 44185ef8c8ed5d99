"""The timm adapter over core attentions: same outputs as the wrapped mechanism and as timm's own Attention,
refusals for what a mechanism cannot honour, and every registry entry inside a timm ViT."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import Attention

import core
from vision import CoreAttention, create_vit, timm_attention_layer
from vision.pretrained import split_fused_attention

NAMES = core.list_attentions()


def skip_unless_buildable(name: str) -> None:
    """A mechanism that needs options without defaults is skipped visibly, with the error it raised."""
    try:
        core.build_attention(name, 64, 4)
    except (TypeError, ValueError) as error:
        pytest.skip(f"{name} cannot be built with default options: {error}")


def test_layer_is_a_class_bound_to_its_mechanism():
    layer = timm_attention_layer("linear", eps=1e-5)
    assert issubclass(layer, CoreAttention)
    attn = layer(64, num_heads=4, qkv_bias=True)
    assert attn.mechanism.registry_name == "linear"
    assert attn.mechanism.eps == 1e-5
    assert attn.mechanism.q_proj.bias is not None


def test_unknown_mechanism_fails_before_timm_builds():
    with pytest.raises(KeyError, match="unknown attention"):
        timm_attention_layer("no_such_attention")


def test_output_equals_the_wrapped_mechanism():
    torch.manual_seed(0)
    attn = timm_attention_layer("primal", low_rank=8)(64, num_heads=4, qkv_bias=True).eval()
    x = torch.randn(2, 17, 64)
    torch.testing.assert_close(attn(x), attn.mechanism(x))
    assert attn.attention_matrix(x).shape == (2, 4, 17, 17)


def test_softmax_adapter_matches_timm_attention_with_the_same_weights():
    torch.manual_seed(0)
    reference = Attention(64, num_heads=4, qkv_bias=True).eval()
    attn = timm_attention_layer("softmax")(64, num_heads=4, qkv_bias=True).eval()
    state = {f"blocks.0.attn.{k}": v for k, v in reference.state_dict().items()}
    model = torch.nn.Module()
    model.blocks = torch.nn.ModuleList([torch.nn.Module()])
    model.blocks[0].attn = attn
    converted = split_fused_attention(state, model)
    attn.load_state_dict({k.removeprefix("blocks.0.attn."): v for k, v in converted.items()})
    x = torch.randn(3, 10, 64)
    torch.testing.assert_close(attn(x), reference(x), atol=1e-5, rtol=1e-5)


def test_bool_padding_mask_is_passed_as_key_padding_mask():
    torch.manual_seed(0)
    attn = timm_attention_layer("softmax")(64, num_heads=4).eval()
    x = torch.randn(2, 9, 64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 6:] = False
    torch.testing.assert_close(attn(x, attn_mask=mask), attn.mechanism(x, key_padding_mask=mask))
    assert not torch.allclose(attn(x, attn_mask=mask)[1], attn(x)[1])


def test_refusals():
    layer = timm_attention_layer("softmax")
    with pytest.raises(ValueError, match="qk_norm"):
        layer(64, num_heads=4, qk_norm=True)
    with pytest.raises(ValueError, match="no attention weights"):
        timm_attention_layer("primal")(64, num_heads=4, attn_drop=0.1)
    attn = layer(64, num_heads=4)
    with pytest.raises(ValueError, match="is_causal=True"):
        attn(torch.randn(1, 5, 64), is_causal=True)
    with pytest.raises(ValueError, match="key padding mask"):
        attn(torch.randn(1, 5, 64), attn_mask=torch.zeros(1, 1, 5, 5))


def test_attention_dropout_reaches_mechanisms_that_have_it():
    attn = timm_attention_layer("softmax")(64, num_heads=4, attn_drop=0.1, proj_drop=0.2)
    assert attn.mechanism.attention_dropout == 0.1
    assert attn.proj_drop.p == 0.2


@pytest.mark.parametrize("name", NAMES)
def test_every_registry_attention_trains_inside_a_timm_vit(name, tiny):
    skip_unless_buildable(name)
    torch.manual_seed(0)
    model = create_vit("deit_tiny_patch16_224", attention=name, num_classes=5, **{**tiny, "depth": 1})
    assert all(block.attn.mechanism.registry_name == name for block in model.blocks)
    images = torch.randn(2, 3, 32, 32)
    logits = model(images)
    assert logits.shape == (2, 5)
    (logits.square().mean() + core.ksvd_loss(model)).backward()
    grads = [p.grad for p in model.blocks[0].attn.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    assert model.patch_embed.proj.weight.grad.abs().sum() > 0


def test_create_model_accepts_the_adapter_class(tiny):
    model = timm.create_model("vit_tiny_patch16_224", attn_layer=timm_attention_layer("cosine"), num_classes=3, **tiny)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 3)
