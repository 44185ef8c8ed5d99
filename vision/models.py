"""DeiT/ViT with any ``core`` attention, and Primal.+DeiT registered with timm.

Primal.+DeiT (Chen et al., NeurIPS 2023, section 5.4 and Table 7a) is timm's DeiT with the attention of its last
k blocks replaced by Primal-Attention (s = 96 singular directions, n = min(N, 10 s) sampled tokens, KSVD loss with
eta = 0.05 on those blocks only). As in the official code, the primal blocks are inserted after timm's weight
initialisation and keep their own initialisation.

After ``import vision``:

>>> timm.create_model("primal_deit_small_patch16_224", num_classes=100)          # last block primal
>>> timm.create_model("primal_deit_tiny_patch16_224", num_primal_blocks=2, low_rank=48)
>>> create_vit("deit_small_patch16_224", attention="linear")                     # any registry attention
"""

from __future__ import annotations

from typing import Any

import timm
from timm.models import register_model
from torch import nn

from vision.adapter import CoreAttention, timm_attention_layer

PRIMAL_DEFAULTS = {"low_rank": 96, "rank_multi": 10}


def num_tokens(model: nn.Module) -> int:
    """Sequence length N a ViT's blocks see: patches plus prefix (class, distillation, register) tokens."""
    return int(model.patch_embed.num_patches) + int(getattr(model, "num_prefix_tokens", 1))


def attention_name(attn: nn.Module) -> str:
    """The registry name of a block's attention, or ``"timm"`` for timm's own ``Attention``."""
    return attn.mechanism_name if isinstance(attn, CoreAttention) else "timm"


def primal_block_indices(model: nn.Module) -> list[int]:
    """Indices of the blocks whose attention is Primal-Attention."""
    return [i for i, block in enumerate(model.blocks) if attention_name(block.attn) == "primal"]


def _attention_geometry(attn: nn.Module) -> dict[str, Any]:
    """Width, heads, biases and dropout of a timm or core attention module, to build its replacement."""
    if isinstance(attn, CoreAttention):
        return {
            "dim": attn.dim,
            "num_heads": attn.num_heads,
            "qkv_bias": attn.qkv_bias,
            "proj_bias": attn.proj_bias,
            "proj_drop": attn.proj_drop.p,
        }
    if hasattr(attn, "qkv") and hasattr(attn, "num_heads"):
        return {
            "dim": attn.qkv.in_features,
            "num_heads": attn.num_heads,
            "qkv_bias": attn.qkv.bias is not None,
            "proj_bias": attn.proj.bias is not None,
            "proj_drop": getattr(attn.proj_drop, "p", 0.0),
        }
    raise TypeError(f"cannot replace attention of type {type(attn).__name__}: expected timm's Attention or CoreAttention")


def make_primal_plus(model: nn.Module, num_primal_blocks: int = 1, **primal_options: Any) -> nn.Module:
    """Replace the attention of the last ``num_primal_blocks`` blocks of a timm ViT by Primal-Attention, in place.

    Args:
        model: a timm ``VisionTransformer`` (blocks in ``model.blocks``, each with ``attn``).
        num_primal_blocks: k, how many of the last blocks become primal (0 leaves the model unchanged).
        **primal_options: options of ``core``'s ``primal`` (``low_rank`` s, ``rank_multi``, ...); the DeiT
            defaults are s = 96, rank_multi = 10, the sampled tokens capped at N and the KSVD loss reduced over
            the batch before squaring (the official CV code).

    Returns:
        The same model.

    Raises:
        ValueError: if ``num_primal_blocks`` is outside ``[0, depth]``.
    """
    depth = len(model.blocks)
    if not 0 <= num_primal_blocks <= depth:
        raise ValueError(f"num_primal_blocks must be in [0, {depth}] for a model of depth {depth}, got {num_primal_blocks}")
    options = {**PRIMAL_DEFAULTS, "max_seq_len": num_tokens(model), "ksvd_reduction": "batch", **primal_options}
    layer = timm_attention_layer("primal", **options)
    for block in list(model.blocks)[depth - num_primal_blocks:]:
        reference = next(block.attn.parameters())
        geometry = _attention_geometry(block.attn)
        dim, heads = geometry.pop("dim"), geometry.pop("num_heads")
        block.attn = layer(dim, num_heads=heads, device=reference.device, dtype=reference.dtype, **geometry)
    return model


def create_vit(
    base: str = "deit_small_patch16_224",
    attention: str = "softmax",
    attention_options: dict[str, Any] | None = None,
    num_primal_blocks: int = 0,
    primal_options: dict[str, Any] | None = None,
    pretrained_checkpoint: str | None = None,
    **timm_kwargs: Any,
) -> nn.Module:
    """Any timm ViT/DeiT with every block's attention taken from the ``core`` registry.

    Args:
        base: a timm model name whose blocks build attention through ``attn_layer`` (``deit_*``, ``vit_*``).
        attention: registry name used in every block (``core.list_attentions()``).
        attention_options: options for that mechanism.
        num_primal_blocks: then make the last k blocks primal (Primal.+X); 0 = none.
        primal_options: options of the primal blocks (see :func:`make_primal_plus`).
        pretrained_checkpoint: a DeiT/ViT checkpoint file in timm's layout (fused ``qkv``) to load into the
            canonical blocks (see :func:`vision.pretrained.load_pretrained`).
        **timm_kwargs: overrides for ``timm.create_model`` (``num_classes``, ``img_size``, ``patch_size``,
            ``embed_dim``, ``depth``, ``num_heads``, ``in_chans``, ``drop_path_rate``, ...).

    Returns:
        timm ``VisionTransformer``; ``model(images)`` maps ``(B, C, H, W)`` to logits ``(B, num_classes)``.
    """
    layer = timm_attention_layer(attention, **(attention_options or {}))
    model = timm.create_model(base, pretrained=False, attn_layer=layer, **timm_kwargs)
    make_primal_plus(model, num_primal_blocks, **(primal_options or {}))
    if pretrained_checkpoint:
        from vision.pretrained import load_pretrained

        load_pretrained(model, pretrained_checkpoint)
    return model


_PRIMAL_OPTION_NAMES = ("low_rank", "rank_multi", "max_seq_len", "ksvd_reduction", "original_padding")


def _primal_deit(base: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    if pretrained:
        raise ValueError(
            f"there are no hub weights for Primal.+{base}; to start from DeiT weights pass "
            "pretrained_checkpoint='/path/to/deit.pth' (they load into the canonical blocks)"
        )
    for unused in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
        kwargs.pop(unused, None)
    num_primal_blocks = kwargs.pop("num_primal_blocks", 1)
    canonical = kwargs.pop("canonical_attention", "softmax")
    canonical_options = kwargs.pop("canonical_options", None)
    primal_options = {name: kwargs.pop(name) for name in _PRIMAL_OPTION_NAMES if name in kwargs}
    return create_vit(
        base,
        attention=canonical,
        attention_options=canonical_options,
        num_primal_blocks=num_primal_blocks,
        primal_options=primal_options,
        **kwargs,
    )


@register_model
def primal_deit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Primal.+DeiT-Tiny/16: DeiT-Tiny (192 wide, 12 blocks, 3 heads) with its last ``num_primal_blocks`` (1)
    blocks primal (``low_rank`` 96, ``rank_multi`` 10); other blocks use ``canonical_attention`` ("softmax")."""
    return _primal_deit("deit_tiny_patch16_224", pretrained, **kwargs)


@register_model
def primal_deit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Primal.+DeiT-Small/16, the paper's ImageNet model: DeiT-Small (384 wide, 12 blocks, 6 heads) with its last
    ``num_primal_blocks`` (1) blocks primal (``low_rank`` 96, ``rank_multi`` 10)."""
    return _primal_deit("deit_small_patch16_224", pretrained, **kwargs)


@register_model
def primal_deit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Primal.+DeiT-Base/16: DeiT-Base (768 wide, 12 blocks, 12 heads) with its last ``num_primal_blocks`` (1)
    blocks primal (``low_rank`` 96, ``rank_multi`` 10)."""
    return _primal_deit("deit_base_patch16_224", pretrained, **kwargs)


PRIMAL_MODELS = ("primal_deit_tiny_patch16_224", "primal_deit_small_patch16_224", "primal_deit_base_patch16_224")


def build_model(config: Any, num_classes: int, in_chans: int, img_size: int) -> nn.Module:
    """The model a :class:`~vision.config.TrainConfig` describes, for a dataset's classes, channels and size.

    ``primal_deit_*`` names go through ``timm.create_model`` (last ``num_primal_blocks`` blocks primal, 1 by
    default); any other timm ViT name gets ``config.attention`` in every block and ``num_primal_blocks`` (0 by
    default) primal blocks at the end.
    """
    sizes = {key: getattr(config, key) for key in ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio")}
    timm_kwargs = {
        "num_classes": num_classes,
        "in_chans": in_chans,
        "img_size": img_size,
        "drop_rate": config.drop,
        "drop_path_rate": config.drop_path,
        **{key: value for key, value in sizes.items() if value is not None},
    }
    primal_options = {"low_rank": config.low_rank, "rank_multi": config.rank_multi}
    if config.model in PRIMAL_MODELS:
        return timm.create_model(
            config.model,
            num_primal_blocks=1 if config.num_primal_blocks is None else config.num_primal_blocks,
            canonical_attention=config.attention,
            canonical_options=config.attention_options,
            pretrained_checkpoint=config.pretrained_checkpoint,
            **primal_options,
            **timm_kwargs,
        )
    return create_vit(
        config.model,
        attention=config.attention,
        attention_options=config.attention_options,
        num_primal_blocks=config.num_primal_blocks or 0,
        primal_options=primal_options,
        pretrained_checkpoint=config.pretrained_checkpoint,
        **timm_kwargs,
    )
