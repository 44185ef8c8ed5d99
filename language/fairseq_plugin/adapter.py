"""fairseq's multihead-attention call around a causal ``core`` attention module.

Primal-Attention (Chen et al., NeurIPS 2023) replaces the self-attention of the last ``transformer_lm`` decoder
layer. fairseq calls a decoder self-attention as ``attn(query, key, value, key_padding_mask, incremental_state,
need_weights, attn_mask)`` on ``(T, B, C)`` tensors, with ``key_padding_mask`` True at padding and ``attn_mask``
the ``(T, T)`` future mask; during generation ``incremental_state`` carries each layer's decoding state and is
reordered by :meth:`CoreSelfAttention.reorder_incremental_state` for beam search. This module translates that
call into the ``core`` interface: ``attn(x, key_padding_mask)`` on ``(B, T, C)`` with True = real token, and
``attn.step(x_t, state)`` for one token (running sums of q and k for primal, a key/value cache for softmax,
the recurrent state for linear/cosine).
"""

from __future__ import annotations

from typing import Any

import torch
from fairseq.incremental_decoding_utils import with_incremental_state
from torch import Tensor, nn

import core

STATE_KEY = "core_attn_state"


@with_incremental_state
class CoreSelfAttention(nn.Module):
    """Causal decoder self-attention backed by a registered ``core`` mechanism.

    Args:
        name (str): registry name of a causal-capable mechanism (``core.list_attentions(causal=True)``).
        embed_dim (int): model width C.
        num_heads (int): heads H.
        **options: mechanism options passed to ``core.build_attention`` (e.g. ``low_rank=30`` for primal).

    Raises:
        ValueError: if the mechanism has no causal form.
    """

    def __init__(self, name: str, embed_dim: int, num_heads: int, **options: Any) -> None:
        super().__init__()
        info = core.attention_info(name)
        if not info.causal:
            raise ValueError(
                f"attention {name!r} has no causal form and cannot be a language-model self-attention; "
                f"choose one of {core.list_attentions(causal=True)}"
            )
        self.name = name
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.incremental = info.incremental
        self.attention = core.build_attention(name, embed_dim, num_heads, causal=True, **options)
        self._checked_masks: set[tuple[int, str]] = set()

    def extra_repr(self) -> str:
        return f"mechanism={self.name!r}"

    def forward(
        self,
        query: Tensor,
        key: Tensor | None = None,
        value: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        incremental_state: dict[str, dict[str, Tensor | None]] | None = None,
        need_weights: bool = False,
        static_kv: bool = False,
        attn_mask: Tensor | None = None,
        before_softmax: bool = False,
        need_head_weights: bool = False,
    ) -> tuple[Tensor, None]:
        """Self-attention in fairseq's layout.

        Args:
            query (Tensor): ``(T, B, C)``.
            key, value (Tensor, optional): must be ``query`` itself (self-attention).
            key_padding_mask (Tensor, optional): ``(B, T)``, True (or 1) at padding, as fairseq passes it.
            incremental_state (dict, optional): fairseq's decoding state; when given, ``query`` holds the new
                token(s) only and the layer decodes from its cached state.
            need_weights, need_head_weights (bool): attention weights are never returned (None).
            static_kv, before_softmax: unsupported; must be False.
            attn_mask (Tensor, optional): the ``(T, T)`` future mask; required outside incremental decoding,
                because the module is causal and cannot attend to the future.

        Returns:
            tuple: output ``(T, B, C)`` and None in place of attention weights.
        """
        if static_kv or before_softmax:
            raise ValueError("CoreSelfAttention is a self-attention: static_kv and before_softmax are not supported")
        if (key is not None and key is not query) or (value is not None and value is not query):
            raise ValueError("CoreSelfAttention is a self-attention: key and value must be the query tensor itself")
        if query.dim() != 3 or query.shape[-1] != self.embed_dim:
            raise ValueError(f"expected query of shape (T, B, {self.embed_dim}), got {tuple(query.shape)}")
        if incremental_state is not None:
            return self._decode(query, key_padding_mask, incremental_state), None
        self._check_future_mask(attn_mask, query.shape[0], query.device)
        real = None if key_padding_mask is None else ~key_padding_mask.to(torch.bool)
        out = self.attention(query.transpose(0, 1), key_padding_mask=real)  # (B, T, C)
        return out.transpose(0, 1), None

    def _check_future_mask(self, attn_mask: Tensor | None, length: int, device: torch.device) -> None:
        if attn_mask is None:
            if length > 1:
                raise ValueError(
                    f"{self.name} is built causal, but fairseq asked for full-context attention (attn_mask=None "
                    "outside incremental decoding); only causal decoding is supported"
                )
            return
        if tuple(attn_mask.shape) != (length, length):
            raise ValueError(f"expected a ({length}, {length}) future mask, got attn_mask of shape {tuple(attn_mask.shape)}")
        key = (length, str(device))
        if key in self._checked_masks:
            return
        blocked = torch.isinf(attn_mask) if attn_mask.is_floating_point() else attn_mask.to(torch.bool)
        future = torch.ones(length, length, dtype=torch.bool, device=attn_mask.device).triu(1)
        if not torch.equal(blocked, future):
            raise ValueError(
                f"{self.name} is causal and can only apply fairseq's future mask; got an attn_mask that blocks "
                "other positions"
            )
        self._checked_masks.add(key)

    def _decode(
        self, query: Tensor, key_padding_mask: Tensor | None, incremental_state: dict[str, dict[str, Tensor | None]]
    ) -> Tensor:
        if not self.incremental:
            raise ValueError(f"attention {self.name!r} has no incremental decoding; generate without it")
        if key_padding_mask is not None and bool(key_padding_mask[:, -query.shape[0]:].any()):
            raise ValueError(
                "incremental decoding received a padding token; fairseq feeds real tokens only while generating, "
                "so the running state cannot skip it"
            )
        buffer = self._get_input_buffer(incremental_state)
        state = buffer.get(STATE_KEY) if buffer else None
        outputs = []
        for x_t in query.unbind(0):  # one token at a time: x_t (B, C)
            y_t, state = self.attention.step(x_t, state)
            outputs.append(y_t)
        self._set_input_buffer(incremental_state, {STATE_KEY: state})
        return torch.stack(outputs, dim=0)

    def reorder_incremental_state(
        self, incremental_state: dict[str, dict[str, Tensor | None]], new_order: Tensor
    ) -> dict[str, dict[str, Tensor | None]]:
        """Reorder the batch dimension of the cached state (beam search); ``new_order: (B',)`` indices."""
        buffer = self._get_input_buffer(incremental_state)
        if buffer and buffer.get(STATE_KEY) is not None:
            state = {
                k: v.index_select(0, new_order) if torch.is_tensor(v) else v for k, v in buffer[STATE_KEY].items()
            }
            self._set_input_buffer(incremental_state, {STATE_KEY: state})
        return incremental_state

    def _get_input_buffer(self, incremental_state: dict | None) -> dict[str, Any]:
        result = self.get_incremental_state(incremental_state, "attn_state")
        return result if result is not None else {}

    def _set_input_buffer(self, incremental_state: dict | None, buffer: dict[str, Any]):
        return self.set_incremental_state(incremental_state, "attn_state", buffer)
