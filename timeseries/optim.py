"""RAdam (Liu et al., ICLR 2020, "On the Variance of the Adaptive Learning Rate and Beyond") on torch's fused
Adam kernel.

The Primal-Attention time-series scripts train with RAdam. ``torch.optim.RAdam`` has no fused kernel and its
step costs about as much as a third of a training step of the 6M-parameter classifier on CPU. RAdam's update
is Adam's with two per-step scalars, so this class drives ``torch.optim.Adam(fused=True)`` with them:

- rectified steps (rho_t > 5): ``lr_t = lr * r_t`` and ``eps_t = eps / sqrt(1 - beta2^t)``, which turns Adam's
  ``m_hat / (sqrt(v_hat) + eps_t)`` into RAdam's ``r_t * m_hat * sqrt(1 - beta2^t) / (sqrt(v) + eps)`` exactly;
- the first steps (rho_t <= 5), where RAdam takes the un-adapted step ``lr * m_hat``: ``eps_t = E`` and
  ``lr_t = lr * E`` with E = 1e10, so ``lr * E * m_hat / (sqrt(v_hat) + E) = lr * m_hat`` to float32 rounding.

Moments are updated as in ``torch.optim.RAdam`` (weight decay is the coupled L2 form of both).
"""

from __future__ import annotations

import math

import torch

_LARGE = 1e10


def rectification(step: int, beta2: float) -> float | None:
    """RAdam's r_t for step t (1-based), or None while the variance is not tractable (rho_t <= 5)."""
    rho_inf = 2.0 / (1.0 - beta2) - 1.0
    beta2_t = beta2**step
    rho_t = rho_inf - 2.0 * step * beta2_t / (1.0 - beta2_t)
    if rho_t <= 5.0:
        return None
    return math.sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))


class FusedRAdam(torch.optim.Adam):
    """RAdam with the update of ``torch.optim.RAdam`` computed by the fused Adam kernel.

    Args:
        params: parameters or parameter groups.
        lr (float): learning rate. Default: 1e-3.
        betas (tuple[float, float]): moment decay rates. Default: (0.9, 0.999).
        eps (float): denominator term. Default: 1e-8.
        weight_decay (float): L2 penalty added to the gradient. Default: 0.

    Every parameter of a group is assumed to receive a gradient at every step (the step count is per group).
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, fused=True)
        for group in self.param_groups:
            group.setdefault("radam_step", 0)

    @torch.no_grad()
    def step(self, closure=None):
        """One RAdam step for every group."""
        saved = []
        for group in self.param_groups:
            group["radam_step"] += 1
            lr, eps = group["lr"], group["eps"]
            saved.append((lr, eps))
            ratio = rectification(group["radam_step"], group["betas"][1])
            if ratio is None:
                group["lr"], group["eps"] = lr * _LARGE, _LARGE
            else:
                group["lr"] = lr * ratio
                group["eps"] = eps / math.sqrt(1.0 - group["betas"][1] ** group["radam_step"])
        try:
            return super().step(closure)
        finally:
            for group, (lr, eps) in zip(self.param_groups, saved):
                group["lr"], group["eps"] = lr, eps


def clipped_step(optimizer: torch.optim.Optimizer, parameters, max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_(parameters, max_norm)`` followed by ``optimizer.step()``.

    Fused Adam-family optimisers divide every gradient by ``optimizer.grad_scale`` inside their kernel (the hook
    ``torch.amp.GradScaler`` uses), so the clip factor goes there, ``max(1, (||g|| + 1e-6) / max_norm)``, and the
    separate pass that multiplies every gradient is saved. Other optimisers clip first, then step.

    Args:
        optimizer: the optimiser to step.
        parameters: the parameters whose gradients are clipped (those without a gradient are skipped).
        max_norm (float): the largest total 2-norm of the gradients.

    Returns:
        torch.Tensor: the total gradient norm before clipping (a scalar).
    """
    parameters = [p for p in parameters if p.grad is not None]
    total = torch.nn.utils.get_total_norm([p.grad for p in parameters], 2.0, foreach=True)
    fused = all(group.get("fused") for group in optimizer.param_groups) and isinstance(optimizer, torch.optim.Adam)
    if not fused:
        torch.nn.utils.clip_grads_with_norm_(parameters, max_norm, total, foreach=True)
        optimizer.step()
        return total
    optimizer.grad_scale = ((total + 1e-6) / max_norm).clamp(min=1.0).to(torch.float32)
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale
    return total
