"""Mask conventions shared by every op: ``key_padding_mask`` is bool ``(B, N)``, True marks a real token."""

from __future__ import annotations

import torch


def check_key_padding_mask(
    key_padding_mask: torch.Tensor | None, batch: int, length: int, device: torch.device | None = None
) -> torch.Tensor | None:
    """Validate a key padding mask and return it as a bool tensor (or None).

    Args:
        key_padding_mask (torch.Tensor, optional): ``(B, N)``, bool (True = real token) or 0/1 integers.
        batch (int): expected B.
        length (int): expected N.

    Raises:
        ValueError: wrong shape, dtype or values.
    """
    if key_padding_mask is None:
        return None
    if not isinstance(key_padding_mask, torch.Tensor):
        raise ValueError(f"key_padding_mask must be a torch.Tensor, got {type(key_padding_mask).__name__}")
    if key_padding_mask.shape != (batch, length):
        raise ValueError(
            f"expected key_padding_mask of shape (B, N) = ({batch}, {length}), got {tuple(key_padding_mask.shape)}; "
            "it must be bool with True marking real tokens"
        )
    if key_padding_mask.dtype != torch.bool:
        if key_padding_mask.is_floating_point() or key_padding_mask.dtype.is_complex:
            raise ValueError(
                f"key_padding_mask must be bool (True = real token), got dtype {key_padding_mask.dtype}; "
                "an additive float mask is not accepted"
            )
        if ((key_padding_mask != 0) & (key_padding_mask != 1)).any():
            raise ValueError("an integer key_padding_mask may only hold 0 (padding) and 1 (real token)")
        key_padding_mask = key_padding_mask.bool()
    if device is not None and key_padding_mask.device != device:
        key_padding_mask = key_padding_mask.to(device)
    return key_padding_mask


def expand_key_mask(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """``(B, N) -> (B, 1, N, 1)`` float multiplier that zeroes padded keys/values per head."""
    return key_padding_mask[:, None, :, None]


def causal_and_padding_mask(key_padding_mask: torch.Tensor | None, length: int, device: torch.device) -> torch.Tensor:
    """Bool attention mask ``(B or 1, 1, N, N)``, True = query i may attend to key j.

    Causal (j <= i) and, with a padding mask, restricted to real keys. Every row keeps its own diagonal so
    that a padded query before the first real token still has a key (its output is never used, but it
    stays finite); a real query's own key is real, so this changes no real output.
    """
    allowed = torch.ones(length, length, dtype=torch.bool, device=device).tril()
    if key_padding_mask is None:
        return allowed[None, None]
    eye = torch.eye(length, dtype=torch.bool, device=device)
    return (allowed & (key_padding_mask[:, None, :] | eye))[:, None]


def padding_only_mask(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Bool attention mask ``(B, 1, 1, N)`` for non-causal attention over real keys.

    A sequence with no real token at all attends to every position (its outputs are meaningless but finite).
    """
    empty = ~key_padding_mask.any(dim=1, keepdim=True)
    return (key_padding_mask | empty)[:, None, None, :]
