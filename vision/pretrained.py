"""Load DeiT/ViT checkpoints in timm's layout into models whose blocks use ``core`` attention.

timm (and the DeiT release) store each block's attention as one fused ``attn.qkv`` (3D x D) and ``attn.proj``;
``core`` mechanisms have separate ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` under ``attn.mechanism``.
This module splits the fused weights, lets timm's own ``checkpoint_filter_fn`` resample position embeddings and
patch embeddings to the model's grid, drops a classifier head of another size and loads the rest. The attention
of Primal-Attention blocks (Primal.+DeiT, Chen et al., NeurIPS 2023) is left at its initialisation: those blocks
have no counterpart in DeiT; their MLPs and norms still load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.models.vision_transformer import checkpoint_filter_fn
from torch import nn

from core.engine import load_checkpoint
from vision.adapter import CoreAttention

_WRAPPERS = ("model", "state_dict", "model_ema", "state_dict_ema")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did.

    Attributes:
        loaded: model keys that received a tensor from the checkpoint.
        missing: model keys the checkpoint did not provide (they keep their initialisation).
        skipped: checkpoint keys not loaded, with the reason.
    """

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file (``.pth``/``.pt`` from DeiT, timm or this suite, or ``.safetensors``).

    Wrappers such as ``{"model": ...}`` and DDP's ``module.`` prefix are removed.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = load_checkpoint(path)
    for key in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors (looked inside the keys {_WRAPPERS})")
    return {key.removeprefix("module."): value for key, value in state.items()}


def split_fused_attention(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename ``blocks.i.attn.qkv``/``proj`` to the ``core`` names of blocks that use :class:`CoreAttention`.

    Args:
        state_dict: timm-layout tensors; ``attn.qkv.weight`` is ``(3D, D)`` with q, k, v stacked in that order.
        model: the target model; blocks with timm's own attention keep the fused names.

    Returns:
        A new dict with ``blocks.i.attn.mechanism.{q,k,v,out}_proj.{weight,bias}``.
    """
    out = dict(state_dict)
    for index, block in enumerate(model.blocks):
        if not isinstance(block.attn, CoreAttention):
            continue
        source, target = f"blocks.{index}.attn.", f"blocks.{index}.attn.mechanism."
        for kind in ("weight", "bias"):
            fused = out.pop(f"{source}qkv.{kind}", None)
            if fused is not None:
                for name, part in zip(("q_proj", "k_proj", "v_proj"), fused.chunk(3, dim=0)):
                    out[f"{target}{name}.{kind}"] = part.clone()
            proj = out.pop(f"{source}proj.{kind}", None)
            if proj is not None:
                out[f"{target}out_proj.{kind}"] = proj
    return out


def load_pretrained(model: nn.Module, path: str | os.PathLike, load_head: bool = True) -> LoadReport:
    """Load a DeiT/ViT checkpoint file (timm layout) into a model built by :mod:`vision.models`.

    Canonical blocks receive every tensor. Primal blocks receive their MLP and norms but not attention tensors.
    Position embeddings are resampled to the model's grid; a classifier head of another size is skipped.

    Args:
        model: timm ``VisionTransformer`` with :class:`CoreAttention` or timm attention blocks.
        path: checkpoint file.
        load_head: also load the classifier head when its shape matches.

    Returns:
        LoadReport.

    Raises:
        ValueError: if a tensor other than the head has a shape the model cannot take.
    """
    filtered = checkpoint_filter_fn(read_state_dict(path), model, adapt_layer_scale=True)
    state = split_fused_attention(filtered, model)
    own = model.state_dict()
    report = LoadReport()
    primal_prefixes = tuple(
        f"blocks.{i}.attn." for i, block in enumerate(model.blocks)
        if isinstance(block.attn, CoreAttention) and block.attn.mechanism_name == "primal"
    )
    accepted = {}
    for key, value in state.items():
        if key.startswith(primal_prefixes):
            report.skipped[key] = "attention of a primal block (no DeiT counterpart)"
        elif key not in own:
            report.skipped[key] = "not in the model"
        elif key.startswith("head.") and (not load_head or own[key].shape != value.shape):
            report.skipped[key] = f"classifier head {tuple(value.shape)} vs model {tuple(own[key].shape)}"
        elif own[key].shape != value.shape:
            raise ValueError(
                f"{key}: checkpoint has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}; "
                "build the model with the checkpoint's embed_dim/num_heads/depth/in_chans"
            )
        else:
            accepted[key] = value
    result = model.load_state_dict(accepted, strict=False)
    report.loaded = sorted(accepted)
    report.missing = sorted(result.missing_keys)
    return report
