"""The shared base of every attention mechanism that projects queries, keys, values and outputs.

All mechanisms built on :class:`ProjectedAttention` use the parameter names ``q_proj``, ``k_proj``,
``v_proj`` and ``out_proj``, so a trained softmax layer's state dict loads into any of them and only the
mechanism's own extra parameters are reported missing (see :func:`load_shared_projections`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.nn.dropout import Dropout
from core.ops.masks import check_key_padding_mask
from core.ops.projections import shared_input_projections


def check_dims(dim: int, num_heads: int) -> None:
    """Raise ValueError unless ``dim`` and ``num_heads`` are positive integers and ``num_heads`` divides ``dim``."""
    if not isinstance(dim, int) or not isinstance(num_heads, int) or dim <= 0 or num_heads <= 0:
        raise ValueError(f"dim and num_heads must be positive integers, got dim={dim!r}, num_heads={num_heads!r}")
    if dim % num_heads != 0:
        raise ValueError(
            f"dim={dim} is not divisible by num_heads={num_heads}: the head width would be {dim / num_heads:.2f}; "
            "choose num_heads that divides dim"
        )


class ProjectedAttention(nn.Module):
    """Multi-head self-attention skeleton: projections, head split/merge, input checks.

    Subclasses implement :meth:`attend` on per-head tensors. Causality is fixed at construction.

    Args:
        dim (int): model width D; inputs are ``(B, N, D)``.
        num_heads (int): number of heads H; the head width is ``D // H``.
        causal (bool): build the autoregressive form. Default: False.
        qkv_bias (bool): bias in the q/k/v projections. Default: True.
        out_bias (bool): bias in the output projection. Default: True.
        dropout (float): dropout on the attention output (before ``out_proj``). Default: 0.
        uses_values (bool): whether the mechanism has a value projection. Default: True.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        qkv_bias: bool = True,
        out_bias: bool = True,
        dropout: float = 0.0,
        uses_values: bool = True,
    ) -> None:
        super().__init__()
        check_dims(dim, num_heads)
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.causal = bool(causal)
        self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.v_proj = nn.Linear(dim, dim, bias=qkv_bias) if uses_values else None
        self.out_proj = nn.Linear(dim, dim, bias=out_bias)
        self.dropout = Dropout(dropout) if dropout > 0 else nn.Identity()

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, causal={self.causal}"

    def check_input(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Validate ``x: (B, N, D)`` and ``key_padding_mask: (B, N)``; return the mask as bool or None."""
        if x.dim() != 3:
            raise ValueError(
                f"expected x of shape (B, N, {self.dim}), got a {x.dim()}-d tensor of shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"expected x of shape (B, N, {self.dim}), got {tuple(x.shape)}: the last dim must equal "
                f"num_heads * head_dim = {self.num_heads} * {self.head_dim}"
            )
        return check_key_padding_mask(key_padding_mask, x.shape[0], x.shape[1], x.device)

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, N, H * Dh) -> (B, H, N, Dh)``."""
        b, n, _ = t.shape
        return t.view(b, n, self.num_heads, -1).transpose(1, 2)

    @staticmethod
    def merge_heads(t: torch.Tensor) -> torch.Tensor:
        """``(B, H, N, Dh) -> (B, N, H * Dh)``."""
        b, h, n, d = t.shape
        return t.transpose(1, 2).reshape(b, n, h * d)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Per-head queries, keys and values, each ``(B, H, N, Dh)`` (values None without ``v_proj``); one
        accumulated input gradient for the projections (:func:`core.ops.projections.shared_input_projections`)."""
        layers = [self.q_proj, self.k_proj] + ([self.v_proj] if self.v_proj is not None else [])
        projected = [self.split_heads(t) for t in shared_input_projections(x, *layers)]
        return projected[0], projected[1], projected[2] if self.v_proj is not None else None

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        x: torch.Tensor,
    ) -> torch.Tensor:
        """The mechanism itself. ``q, k, v: (B, H, N, Dh)``, mask ``(B, N)`` (True = real) -> ``(B, H, N, Dh)``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention.

        Args:
            x (torch.Tensor): input of shape ``(B, N, D)``.
            key_padding_mask (torch.Tensor, optional): bool ``(B, N)``, True marks real tokens.

        Returns:
            torch.Tensor: ``(B, N, D)``.
        """
        mask = self.check_input(x, key_padding_mask)
        q, k, v = self.project_qkv(x)
        out = self.attend(q, k, v, mask, x)
        return self.out_proj(self.dropout(self.merge_heads(out)))

    def projection_floor(self, x: torch.Tensor) -> torch.Tensor:
        """Only the projections this mechanism runs, without the attention core (the benchmark's GEMM floor)."""
        q, k, v = self.project_qkv(x)
        mixed = q + k if v is None else q + k + v
        return self.out_proj(self.merge_heads(mixed))

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The ``(B, H, N, N)`` matrix this mechanism applies to its values (for spectrum analysis)."""
        raise NotImplementedError(f"{type(self).__name__} does not define an explicit attention matrix")

    def step(self, x_t: torch.Tensor, state: dict[str, Any] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
        """Causal decoding of one token: ``x_t: (B, D)`` -> ``(B, D)`` and the updated state."""
        raise NotImplementedError(f"{type(self).__name__} has no incremental decoding")

    def check_step_input(self, x_t: torch.Tensor) -> None:
        """Validate a decoding input ``(B, D)`` and that the module is causal."""
        if not self.causal:
            raise ValueError(f"{type(self).__name__}.step needs a module built with causal=True")
        if x_t.dim() != 2 or x_t.shape[-1] != self.dim:
            raise ValueError(f"expected x_t of shape (B, {self.dim}) for one decoding step, got {tuple(x_t.shape)}")


def load_shared_projections(module: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load the projections a mechanism shares with ``state_dict`` (e.g. a trained softmax layer).

    Keys the module does not have (a value projection a mechanism does not use) are skipped.

    Returns:
        The names of the module's own parameters and buffers that the state dict did not provide.

    Raises:
        ValueError: if a shared tensor has a different shape.
    """
    own = module.state_dict()
    shared = {key: value for key, value in state_dict.items() if key in own}
    for key, value in shared.items():
        if own[key].shape != value.shape:
            raise ValueError(f"{key}: checkpoint has shape {tuple(value.shape)}, module expects {tuple(own[key].shape)}")
    result = module.load_state_dict(shared, strict=False)
    return list(result.missing_keys)
