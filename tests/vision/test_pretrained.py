"""DeiT checkpoints in timm's layout (fused qkv) load into core-attention models."""

from __future__ import annotations

import pytest
import timm
import torch

import vision  # noqa: F401
from vision.models import create_vit
from vision.pretrained import load_pretrained, read_state_dict


@pytest.fixture
def deit_checkpoint(tmp_path, tiny):
    """A real timm DeiT-tiny-like model (trained-looking random weights) saved as DeiT releases do."""
    torch.manual_seed(0)
    reference = timm.create_model("deit_tiny_patch16_224", num_classes=10, **tiny).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    path = tmp_path / "deit_tiny.pth"
    torch.save({"model": reference.state_dict(), "epoch": 299}, path)
    return reference, path


def test_softmax_model_reproduces_timm_deit(deit_checkpoint, tiny):
    reference, path = deit_checkpoint
    model = create_vit("deit_tiny_patch16_224", num_classes=10, **tiny).eval()
    report = load_pretrained(model, path)
    assert report.missing == [] and report.skipped == {}
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(model(images), reference(images), atol=1e-5, rtol=1e-5)


def test_primal_plus_gets_canonical_blocks_only(deit_checkpoint, tiny):
    reference, path = deit_checkpoint
    model = timm.create_model("primal_deit_tiny_patch16_224", num_classes=10, low_rank=8,
                              pretrained_checkpoint=str(path), **tiny).eval()
    ref_state = reference.state_dict()
    own = model.state_dict()
    q_rows = ref_state["blocks.0.attn.qkv.weight"][:64]
    torch.testing.assert_close(own["blocks.0.attn.mechanism.q_proj.weight"], q_rows)
    torch.testing.assert_close(own["blocks.1.mlp.fc1.weight"], ref_state["blocks.1.mlp.fc1.weight"])
    report = load_pretrained(model, path)
    assert set(report.skipped) == {f"blocks.1.attn.mechanism.{name}_proj.{kind}"
                                   for name in ("q", "k", "v", "out") for kind in ("weight", "bias")}
    assert "blocks.1.attn.mechanism.weight_e" in report.missing
    images = torch.randn(2, 3, 32, 32)
    # the canonical block 0 computes exactly what DeiT's block 0 computes
    torch.testing.assert_close(model.blocks[0](model._pos_embed(model.patch_embed(images))),
                               reference.blocks[0](reference._pos_embed(reference.patch_embed(images))),
                               atol=1e-5, rtol=1e-5)


def test_other_resolution_and_head_size(deit_checkpoint, tiny):
    _, path = deit_checkpoint
    model = create_vit("deit_tiny_patch16_224", num_classes=3, **{**tiny, "img_size": 48})
    report = load_pretrained(model, path)
    assert "pos_embed" in report.loaded  # resampled from 4x4 to 6x6 patches by timm
    assert set(report.skipped) == {"head.weight", "head.bias"}


def test_clear_errors(deit_checkpoint, tmp_path, tiny):
    _, path = deit_checkpoint
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_state_dict(tmp_path / "missing.pth")
    wider = create_vit("deit_tiny_patch16_224", num_classes=10, **{**tiny, "embed_dim": 96})
    with pytest.raises(ValueError, match="expects"):
        load_pretrained(wider, path)
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        read_state_dict(tmp_path / "bad.pth")
