"""Packing the real tokens of a padded batch into rows, and back.

Per-token maps (projections, feed-forward blocks) need not run on padded tokens when the attention honours the
padding mask: their outputs there can never reach a real token. :func:`real_token_rows` lists the real tokens of a
``(B, N)`` mask as flat row indices, :func:`gather_rows` packs ``(B, N, F)`` into the ``(T, F)`` real rows and
:func:`scatter_rows` unpacks ``(T, F)`` into ``(B, N, F)`` with zeros at the padded tokens. All three are plain
autograd operations (``index_select`` and ``index_copy``).
"""

from __future__ import annotations

import torch


def real_token_rows(key_padding_mask: torch.Tensor) -> torch.Tensor:
    """Flat indices ``b * N + t`` of the real tokens of a bool ``(B, N)`` mask (True = real), ``(T,)`` int64,
    in row-major order."""
    return key_padding_mask.reshape(-1).nonzero().squeeze(1)


def gather_rows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """The rows of ``x: (B, N, F)`` listed by ``rows: (T,)``, as ``(T, F)``."""
    return x.reshape(-1, x.shape[-1]).index_select(0, rows)


def scatter_rows(values: torch.Tensor, rows: torch.Tensor, batch: int, length: int) -> torch.Tensor:
    """``(B, N, F)`` zeros with ``values: (T, F)`` written at the flat token indices ``rows: (T,)``."""
    features = values.shape[-1]
    out = values.new_zeros(batch * length, features)
    return out.index_copy(0, rows, values).view(batch, length, features)
