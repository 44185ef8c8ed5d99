"""Dropout with a cheaper mask on CPU.

``torch.nn.Dropout`` on CPU draws one Mersenne-Twister number per element (``bernoulli_``) and costs more than a
``(B N, 512) x (512, 2048)`` matrix product of the feed-forward block it sits in: about 14 % of a time-series
training step. Here each element gets a 16-bit uniform ``u`` in ``[0, 2^16)``, four per 64-bit random word; an
element is kept when ``u >= t`` with ``t = round(p * 2^16)``, so the drop probability is ``t / 2^16`` (``p``
rounded to a multiple of ``2^-16``, within ``2^-17`` of it), and kept elements are scaled by ``2^16 / (2^16 - t)``
so that ``E[dropout(x)] = x`` exactly. Elements are independent, as in Bernoulli dropout.

The words come from torch's generator for small masks. For large ones (from 2^15 elements) torch's generator
draws one 64-bit seed for numpy's SFC64 generator, which makes the words about three times faster than torch's
Mersenne Twister; runs stay reproducible under ``torch.manual_seed`` (or the ``generator`` given). The comparison
``u >= t`` is numpy's (vectorised; torch's comparison to bool is the slow part on CPU), and one numpy multiply casts
and scales the result.

On other devices, in evaluation, for ``inplace=True`` and for non-float inputs, the module is ``nn.Dropout``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 1 << 16  # 16-bit uniforms


def drop_threshold(p: float) -> int:
    """``t = round(p * 2^16)``: an element with 16-bit uniform ``u < t`` is dropped."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    return int(round(p * _LEVELS))


NUMPY_WORDS_FROM = 1 << 15  # elements: below, seeding a numpy generator costs more than it saves


def uniform16(shape: torch.Size | tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """Independent uniform integers in ``[-2^15, 2^15)`` as int16 of ``shape``, four per 64-bit word.

    Words come from ``generator`` (the default CPU generator if None) for fewer than :data:`NUMPY_WORDS_FROM`
    elements, otherwise from numpy's SFC64 seeded by one 63-bit draw of ``generator``.
    """
    numel = math.prod(shape)
    count = (numel + 3) // 4
    if numel < NUMPY_WORDS_FROM:
        words = torch.empty(count, dtype=torch.int64)
        words.random_(-(1 << 63), (1 << 63) - 1, generator=generator)  # all 64 bits (plain random_() leaves the top one 0)
    else:
        seed = int(torch.empty((), dtype=torch.int64).random_(generator=generator))
        bits = np.random.SFC64(seed).random_raw(count)  # uint64
        words = torch.from_numpy(bits.view(np.int64))
    return words.view(torch.int16)[:numel].view(shape)


def dropout_mask(
    shape: torch.Size | tuple[int, ...], p: float, dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A CPU mask of ``shape`` with entries 0 (probability ``t / 2^16``) or ``2^16 / (2^16 - t)``.

    Args:
        shape: the shape of the tensor to drop from.
        p (float): drop probability in ``[0, 1)``.
        dtype: dtype of the mask.
        generator: random source; the default CPU generator if None.

    Returns:
        torch.Tensor: ``shape`` on the CPU; its mean over many draws is 1.
    """
    threshold = drop_threshold(p)
    if threshold >= _LEVELS:
        raise ValueError(f"dropout probability {p} rounds to 1; every element would be dropped")
    signed_threshold = threshold - _LEVELS // 2  # u - 2^15 is what uniform16 holds
    keep = np.greater_equal(uniform16(shape, generator).numpy(), signed_threshold)  # bool, numpy's vector compare
    scale = np.float32(_LEVELS / (_LEVELS - threshold))
    return torch.from_numpy(np.multiply(keep, scale, dtype=np.float32)).to(dtype)  # cast and scale in one pass


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Dropout of ``x`` (any shape) with :func:`dropout_mask` on CPU floats, ``F.dropout`` elsewhere."""
    if not training or p == 0.0:
        return x
    threshold = drop_threshold(p)
    if x.device.type != "cpu" or not x.is_floating_point() or threshold >= _LEVELS:
        return F.dropout(x, p, training)
    if threshold == 0:
        return x
    return x * dropout_mask(x.shape, p, x.dtype)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with :func:`fast_dropout` on CPU (same arguments, state and ``repr``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inplace:
            return super().forward(x)
        return fast_dropout(x, self.p, self.training)
