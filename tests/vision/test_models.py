"""Primal.+DeiT registration with timm and the generic ViT builder."""

from __future__ import annotations

import pytest
import timm
import torch

import core
import vision  # noqa: F401  (registers the models)
from vision.config import TrainConfig
from vision.models import build_model, make_primal_plus, num_tokens, primal_block_indices


def test_primal_models_are_registered():
    assert timm.list_models("primal_deit_*") == [
        "primal_deit_base_patch16_224", "primal_deit_small_patch16_224", "primal_deit_tiny_patch16_224",
    ]


def test_paper_configuration_of_primal_deit_small():
    model = timm.create_model("primal_deit_small_patch16_224", num_classes=100, device="meta")  # shapes only
    assert len(model.blocks) == 12 and primal_block_indices(model) == [11]
    assert all(p.device.type == "meta" for p in model.parameters())  # the primal block follows the model's device
    primal = model.blocks[11].attn.mechanism
    # s = 96, n = min(197, 96 * 10) = 197 sampled tokens, W~ of shape (6, 197, 96), KSVD reduced over the batch
    assert primal.weight_e.shape == (6, 197, 96)
    assert primal.score_proj.in_features == 192 and primal.score_proj.out_features == 64
    assert primal.ksvd_reduction == "batch"
    assert all(block.attn.mechanism_name == "softmax" for block in model.blocks[:11])


def test_last_k_blocks_and_options(tiny):
    model = timm.create_model("primal_deit_tiny_patch16_224", num_primal_blocks=2, low_rank=8, rank_multi=2,
                              num_classes=7, **{**tiny, "depth": 3})
    assert primal_block_indices(model) == [1, 2]
    assert model.blocks[2].attn.mechanism.weight_e.shape == (4, 16, 8)  # n = min(17 tokens, 8 * 2)
    images = torch.randn(3, 3, 32, 32)
    logits = model(images)
    assert logits.shape == (3, 7)
    ksvd = core.ksvd_loss(model)
    assert ksvd.item() > 0
    ksvd.backward()
    assert model.blocks[2].attn.mechanism.lambdas.grad.abs().sum() > 0


def test_canonical_attention_is_configurable(tiny):
    model = timm.create_model("primal_deit_tiny_patch16_224", canonical_attention="linear", low_rank=8, **tiny)
    assert [block.attn.mechanism_name for block in model.blocks] == ["linear", "primal"]


def test_no_hub_weights_and_bad_block_counts(tiny):
    with pytest.raises(ValueError, match="pretrained_checkpoint"):
        timm.create_model("primal_deit_tiny_patch16_224", pretrained=True)
    with pytest.raises(ValueError, match="num_primal_blocks"):
        timm.create_model("primal_deit_tiny_patch16_224", num_primal_blocks=3, **tiny)


def test_make_primal_plus_on_a_plain_timm_deit(tiny):
    model = timm.create_model("deit_tiny_patch16_224", num_classes=4, qkv_bias=False, **tiny)
    make_primal_plus(model, 1, low_rank=8)
    attn = model.blocks[-1].attn
    assert attn.mechanism.q_proj.bias is None  # geometry follows the replaced timm Attention
    assert attn.mechanism.num_samples == num_tokens(model) == 17
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 4)


@pytest.mark.parametrize(("model_name", "expected"), [
    ("primal_deit_tiny_patch16_224", ["softmax", "primal"]),
    ("deit_tiny_patch16_224", ["softmax", "softmax"]),
])
def test_build_model_from_config(model_name, expected, tiny):
    sizes = {key: tiny[key] for key in ("patch_size", "embed_dim", "depth", "num_heads")}
    config = TrainConfig(model=model_name, low_rank=8, **sizes)
    model = build_model(config, num_classes=10, in_chans=1, img_size=28)
    assert [block.attn.mechanism_name for block in model.blocks] == expected
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
