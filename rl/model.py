"""The Decision Transformer (Chen et al., 2021, "Decision Transformer: Reinforcement Learning via Sequence
Modeling") on core's causal decoder blocks, so that any causal registry attention can drive it; Primal.+DT
(Chen et al., NeurIPS 2023) makes the last block Primal-Attention.

Per timestep t the return-to-go R_t, state s_t and action a_t are embedded, each plus a timestep embedding,
and interleaved as tokens (R_1, s_1, a_1, R_2, ...), so a context of K steps is 3K tokens. A GPT (pre-norm
blocks, final LayerNorm, no positional embedding) runs over them; the action a_t is predicted from the hidden
state of the s_t token by a tanh head.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from core.nn import build_layers


class DecisionTransformer(nn.Module):
    """Decision Transformer over any causal attention schedule.

    Args:
        state_dim (int): S.
        act_dim (int): A.
        schedule (Sequence[str]): registry attention name per block, e.g. ``["softmax", "softmax", "primal"]``.
        embed_dim (int): width h. Default: 256.
        num_heads (int): heads. Default: 4.
        context_length (int): K, the longest context in timesteps. Default: 20.
        max_ep_len (int): size of the timestep embedding. Default: 1000.
        dropout (float): embedding, residual and softmax-attention dropout. Default: 0.1.
        activation (str): MLP activation, "relu" (the DT code) or "gelu". Default: "relu".
        attention_options (dict, optional): per-name options, e.g. ``{"primal": {"low_rank": 64}}``.
    """

    def __init__(
        self,
        state_dim: int,
        act_dim: int,
        schedule: Sequence[str],
        embed_dim: int = 256,
        num_heads: int = 4,
        context_length: int = 20,
        max_ep_len: int = 1000,
        dropout: float = 0.1,
        activation: str = "relu",
        attention_options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        self.state_dim = state_dim
        self.act_dim = act_dim
        self.context_length = context_length
        self.max_ep_len = max_ep_len
        self.schedule = list(schedule)
        options = {"softmax": {"attention_dropout": dropout}}
        for name, extra in (attention_options or {}).items():
            options[name] = {**options.get(name, {}), **extra}
        self.embed_timestep = nn.Embedding(max_ep_len, embed_dim)
        self.embed_return = nn.Linear(1, embed_dim)
        self.embed_state = nn.Linear(state_dim, embed_dim)
        self.embed_action = nn.Linear(act_dim, embed_dim)
        self.embed_norm = nn.LayerNorm(embed_dim)
        self.embed_dropout = nn.Dropout(dropout)
        self.blocks = build_layers(
            self.schedule, embed_dim, num_heads, 4 * embed_dim, dropout=dropout, activation=activation, causal=True,
            attention_options=options,
        )
        self.final_norm = nn.LayerNorm(embed_dim)
        self.predict_action = nn.Sequential(nn.Linear(embed_dim, act_dim), nn.Tanh())
        self.blocks.apply(_gpt2_init)

    def forward(
        self,
        states: torch.Tensor,
        actions: torch.Tensor,
        returns_to_go: torch.Tensor,
        timesteps: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict every action of the context.

        Args:
            states (torch.Tensor): ``(B, T, S)`` normalised states, T <= K.
            actions (torch.Tensor): ``(B, T, A)``.
            returns_to_go (torch.Tensor): ``(B, T, 1)`` scaled returns-to-go.
            timesteps (torch.Tensor): ``(B, T)`` int64 in ``[0, max_ep_len)``.
            mask (torch.Tensor, optional): ``(B, T)`` bool, True = real step; passed to every attention layer
                as the key padding mask of the 3T tokens.

        Returns:
            torch.Tensor: ``(B, T, A)`` predicted actions in (-1, 1); a_t depends on (R, s)_{<=t} and a_{<t}.
        """
        b, t, _ = states.shape
        if t > self.context_length:
            raise ValueError(f"context of {t} steps exceeds context_length={self.context_length}")
        if states.shape[-1] != self.state_dim or actions.shape[-1] != self.act_dim:
            raise ValueError(
                f"expected states (B, T, {self.state_dim}) and actions (B, T, {self.act_dim}), "
                f"got {tuple(states.shape)} and {tuple(actions.shape)}"
            )
        if timesteps.max() >= self.max_ep_len or timesteps.min() < 0:
            raise ValueError(f"timesteps must lie in [0, {self.max_ep_len}), got [{timesteps.min()}, {timesteps.max()}]")
        time = self.embed_timestep(timesteps)  # (B, T, h)
        tokens = torch.stack(
            (self.embed_return(returns_to_go) + time, self.embed_state(states) + time, self.embed_action(actions) + time),
            dim=2,
        ).reshape(b, 3 * t, -1)  # (B, 3T, h): R_1, s_1, a_1, R_2, ...
        token_mask = None if mask is None else mask.bool().repeat_interleave(3, dim=1)  # (B, 3T)
        x = self.embed_dropout(self.embed_norm(tokens))
        for block in self.blocks:
            x = block(x, key_padding_mask=token_mask)
        x = self.final_norm(x).reshape(b, t, 3, -1)
        return self.predict_action(x[:, :, 1])

    @torch.no_grad()
    def get_action(
        self, states: torch.Tensor, actions: torch.Tensor, returns_to_go: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """The next action from a history, keeping its last K steps (no padding, as in the Primal.+DT code).

        Args:
            states (torch.Tensor): ``(B, T, S)`` normalised, the last one the current state.
            actions (torch.Tensor): ``(B, T, A)``, the last row a placeholder for the action to choose.
            returns_to_go (torch.Tensor): ``(B, T, 1)`` scaled.
            timesteps (torch.Tensor): ``(B, T)``.

        Returns:
            torch.Tensor: ``(B, A)``.
        """
        k = self.context_length
        predicted = self.forward(states[:, -k:], actions[:, -k:], returns_to_go[:, -k:], timesteps[:, -k:])
        return predicted[:, -1]


def _gpt2_init(module: nn.Module) -> None:
    """GPT-2's initialisation of the transformer (the DT's HuggingFace GPT-2): N(0, 0.02) weights, zero biases.

    Only ``nn.Linear`` modules are touched, so Primal-Attention's orthogonal W_e, W_r and Lambda keep theirs.
    """
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
