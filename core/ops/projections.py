"""Several linear maps of one input with one input-gradient buffer.

Autograd differentiates ``q = x A_q^T + b_q``, ``k = ...``, ``v = ...`` as three separate ``Linear`` nodes: each
backward pass allocates its own ``[T, D]`` input gradient and autograd adds them up, an extra buffer (fresh pages
to fault in for long sequences) and an extra pass per map. :func:`shared_input_projections` computes the same maps
and, in the backward pass, accumulates the input gradient in place (``addmm_``) in a single buffer. Outputs that
receive no gradient (e.g. values that were not used) cost nothing in the backward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _SharedInputProjections(torch.autograd.Function):
    """``(x, A_1, b_1, A_2, b_2, ...)`` -> ``(x A_1^T + b_1, x A_2^T + b_2, ...)``; biases may be None."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, *params: torch.Tensor | None):
        ctx.set_materialize_grads(False)  # unused outputs get None, not a tensor of zeros
        ctx.save_for_backward(x, *params)
        return tuple(F.linear(x, params[i], params[i + 1]) for i in range(0, len(params), 2))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: torch.Tensor | None):
        x, *params = ctx.saved_tensors
        x2d = x.reshape(-1, x.shape[-1])  # (T, D_in)
        grad_x = None
        grad_params: list[torch.Tensor | None] = [None] * len(params)
        for i, grad in enumerate(grads):
            if grad is None:
                continue
            weight, bias = params[2 * i], params[2 * i + 1]
            grad2d = grad.reshape(-1, grad.shape[-1])  # (T, D_out)
            if ctx.needs_input_grad[0]:
                grad_x = grad2d.mm(weight) if grad_x is None else grad_x.addmm_(grad2d, weight)
            if ctx.needs_input_grad[1 + 2 * i]:
                grad_params[2 * i] = grad2d.t().mm(x2d)
            if bias is not None and ctx.needs_input_grad[2 + 2 * i]:
                grad_params[2 * i + 1] = grad2d.sum(dim=0)
        return (None if grad_x is None else grad_x.view(x.shape), *grad_params)


def shared_input_projections(x: torch.Tensor, *layers: nn.Linear) -> tuple[torch.Tensor, ...]:
    """``tuple(layer(x) for layer in layers)`` with one accumulated input gradient in the backward pass.

    Args:
        x (torch.Tensor): ``(..., D_in)``.
        *layers (nn.Linear): maps from ``D_in`` (output widths may differ).

    Returns:
        tuple: one ``(..., D_out_i)`` tensor per layer, equal to ``layer(x)``.
    """
    wants_grad = x.requires_grad or any(p.requires_grad for layer in layers for p in layer.parameters())
    if not torch.is_grad_enabled() or not wants_grad or torch.is_autocast_enabled(x.device.type):
        return tuple(layer(x) for layer in layers)  # nothing to save; autocast records its casts on plain layers
    params = [t for layer in layers for t in (layer.weight, layer.bias)]
    return _SharedInputProjections.apply(x, *params)
