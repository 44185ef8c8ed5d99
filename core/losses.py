"""Auxiliary losses gathered from a model's modules.

The suites add ``eta * ksvd_loss(model)`` to their task loss (Primal-Attention, Chen et al., NeurIPS 2023).
"""

from __future__ import annotations

import torch
from torch import nn


def ksvd_loss(model: nn.Module) -> torch.Tensor:
    """Mean over primal layers of their KSVD loss ``(E + R - T)^2`` for the forward passes since the last call.

    Each layer's recorded terms are consumed, so call this once per optimisation step, after the forward
    pass(es). A model without primal layers (or with no recorded pass) gives a zero scalar.

    Args:
        model (nn.Module): any module tree containing layers with ``pop_ksvd_loss``.

    Returns:
        torch.Tensor: a scalar (float32 or wider) on the model's device.
    """
    losses = []
    for module in model.modules():
        pop = getattr(module, "pop_ksvd_loss", None)
        if callable(pop):
            value = pop()
            if value is not None:
                losses.append(value)
    if not losses:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else None
        return torch.zeros((), device=device)
    return torch.stack(losses).mean()


def clear_ksvd(model: nn.Module) -> None:
    """Discard recorded KSVD terms of every primal layer (e.g. after evaluation passes)."""
    for module in model.modules():
        clear = getattr(module, "clear_ksvd", None)
        if callable(clear):
            clear()
