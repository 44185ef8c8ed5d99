"""timm's attention interface over any mechanism of the ``core`` registry.

timm's ``Block`` builds its attention as ``attn_layer(dim, num_heads=..., qkv_bias=..., qk_norm=..., attn_drop=...,
proj_drop=..., norm_layer=..., ...)`` and calls it as ``attn(x, attn_mask=None, is_causal=False)``. timm checks
``issubclass(attn_layer, ...)``, so ``attn_layer`` must be a class: :func:`timm_attention_layer` makes one per
mechanism and options. This is how Primal.+DeiT (Chen et al., NeurIPS 2023, section 5.4) and DeiT with any other
registry attention are built from timm's own ``VisionTransformer``.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

import core


def _accepts(name: str, option: str, through_kwargs: bool = True) -> bool:
    """Whether the registered class of ``name`` takes ``option`` by name (or, if allowed, through ``**kwargs``:
    the base class options ``qkv_bias``/``out_bias``)."""
    parameters = inspect.signature(core.attention_class(name).__init__).parameters
    if option in parameters:
        return True
    return through_kwargs and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


class CoreAttention(nn.Module):
    """A ``core`` attention mechanism behind timm's attention signature.

    Subclasses made by :func:`timm_attention_layer` fix ``mechanism_name`` and ``mechanism_options``. The
    mechanism lives in ``self.mechanism``, so a block's parameters are ``attn.mechanism.q_proj.weight`` etc.

    Args:
        dim (int): model width D; inputs are ``(B, N, D)``.
        num_heads (int): heads H.
        qkv_bias (bool): bias in the q/k/v projections (ignored by mechanisms without such projections).
        qk_norm (bool): timm's q/k normalisation; not supported by core mechanisms (must be False).
        scale_norm (bool): timm's norm before the output projection; not supported (must be False).
        proj_bias (bool): bias in the output projection (ignored by mechanisms without one).
        attn_drop (float): dropout on attention weights; passed as ``attention_dropout`` to mechanisms that
            have it, refused (when > 0) by those that have no attention weights.
        proj_drop (float): dropout after the output projection, as in timm.
        norm_layer: accepted for signature compatibility (only used by ``qk_norm``/``scale_norm``).
        device, dtype: where to create the parameters.
        **options: more options for the mechanism; they override ``mechanism_options``.
    """

    mechanism_name: str = "softmax"
    mechanism_options: dict[str, Any] = {}

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = False,
        qk_norm: bool = False,
        scale_norm: bool = False,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        norm_layer: type[nn.Module] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        name = self.mechanism_name
        if qk_norm or scale_norm:
            raise ValueError(
                f"{name!r} attention (core) has no qk_norm/scale_norm; build the model with qk_norm=False and "
                "scale_attn_norm=False"
            )
        self.dim, self.num_heads, self.qkv_bias, self.proj_bias = dim, num_heads, qkv_bias, proj_bias
        options = {**self.mechanism_options, **options}
        if attn_drop > 0:
            if not _accepts(name, "attention_dropout", through_kwargs=False):
                raise ValueError(
                    f"{name!r} attention has no attention weights to drop out (attn_drop={attn_drop}); "
                    "use attn_drop_rate=0 for this mechanism"
                )
            options.setdefault("attention_dropout", attn_drop)
        for option, value in (("qkv_bias", qkv_bias), ("out_bias", proj_bias)):
            if _accepts(name, option):
                options.setdefault(option, value)
        self.mechanism = core.build_attention(name, dim, num_heads, **options)
        self.proj_drop = nn.Dropout(proj_drop)
        if device is not None or dtype is not None:
            self.to(device=device, dtype=dtype)

    @property
    def causal(self) -> bool:
        return self.mechanism.causal

    def extra_repr(self) -> str:
        return f"mechanism={self.mechanism_name!r}"

    def _padding_mask(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor | None:
        if attn_mask is None:
            return None
        if attn_mask.dtype == torch.bool and attn_mask.shape == x.shape[:2]:
            return attn_mask
        raise ValueError(
            f"{self.mechanism_name!r} attention takes only a key padding mask: a bool attn_mask of shape "
            f"(B, N) = {tuple(x.shape[:2])} with True for real tokens; got {attn_mask.dtype} of shape "
            f"{tuple(attn_mask.shape)}"
        )

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        """Self-attention with timm's call signature.

        Args:
            x (torch.Tensor): tokens of shape ``(B, N, D)``.
            attn_mask (torch.Tensor, optional): bool ``(B, N)`` key padding mask, True = real token.
            is_causal (bool): must match how the mechanism was built (causality is fixed at construction).

        Returns:
            torch.Tensor: ``(B, N, D)``.
        """
        if is_causal != self.mechanism.causal:
            raise ValueError(
                f"is_causal={is_causal} but the {self.mechanism_name!r} attention was built with "
                f"causal={self.mechanism.causal}; pass causal=... in the mechanism options instead"
            )
        return self.proj_drop(self.mechanism(x, key_padding_mask=self._padding_mask(x, attn_mask)))

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The mechanism's ``(B, H, N, N)`` attention matrix for ``x: (B, N, D)`` (spectrum analysis)."""
        return self.mechanism.attention_matrix(x, key_padding_mask)


def timm_attention_layer(mechanism: str, **options: Any) -> type[CoreAttention]:
    """A :class:`CoreAttention` subclass bound to one registry mechanism, usable as timm's ``attn_layer``.

    Args:
        mechanism: a name from :func:`core.list_attentions`.
        **options: mechanism options (e.g. ``low_rank=96`` for ``primal``).

    Returns:
        A class ``cls(dim, num_heads=..., qkv_bias=..., ...)``.

    Raises:
        KeyError: for an unknown mechanism (with the available names).

    Example:
        >>> model = timm.create_model("deit_tiny_patch16_224", attn_layer=timm_attention_layer("linear"))
    """
    core.attention_info(mechanism)  # unknown names fail here, before timm builds anything
    class_name = "".join(part.capitalize() for part in mechanism.replace("-", "_").split("_")) + "TimmAttention"
    return type(class_name, (CoreAttention,), {"mechanism_name": mechanism, "mechanism_options": dict(options)})
