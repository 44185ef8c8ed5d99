"""Gaussian-kernel attention and its Nystrom approximation (Chen et al., NeurIPS 2021, "Skyformer: Remodel
Self-Attention with Gaussian Kernel and Nystrom Method").

- ``kernelized``: exact ``kappa(Q', K') V`` with ``kappa(a, b) = exp(-|a - b|^2 / 2)``, ``Q' = Q / d^{1/4}``,
  ``K' = K / d^{1/4}`` and no row normalisation; causal form available.
- ``skyformer``: Nystrom on the lifted PSD kernel matrix of ``[Q'; K']`` with m landmarks drawn among the real
  tokens' queries and keys, a ridge ``gamma`` and the degree-normalised Newton-Schulz inverse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from core.attention.base import ProjectedAttention
from core.ops.gaussian import kernelized_attention, kernelized_attention_weights
from core.ops.sampling import real_token_positions
from core.ops.skyformer import (
    packed_skyformer_attention,
    skyformer_attention,
    skyformer_attention_weights,
    skyformer_landmarks,
)
from core.registry import register_attention


@register_attention(
    "kernelized",
    causal=True,
    key_padding_mask=True,
    approximates=None,
    complexity="O(N^2 d)",
    summary="exact Gaussian-kernel attention exp(-|q - k|^2 / 2 sqrt(d)) v, no normalisation (Skyformer, 2021)",
)
class KernelizedAttention(ProjectedAttention):
    """Exact Gaussian-kernel attention, Skyformer's reference; runs through SDPA in O(N) memory.

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): query i sees keys j <= i. Default: False.
        scale (float, optional): feature scale; default ``head_dim^{-1/4}`` (upstream hard-codes ``32^{-1/4}``,
            the same value for its head width 32).
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    def __init__(self, dim: int, num_heads: int, causal: bool = False, *, scale: float | None = None, **kwargs):
        super().__init__(dim, num_heads, causal, **kwargs)
        self.scale = scale

    def attend(self, q, k, v, key_padding_mask, x):
        return kernelized_attention(q, k, v, key_padding_mask, causal=self.causal, scale=self.scale)

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        return kernelized_attention_weights(q, k, mask, causal=self.causal, scale=self.scale)


@register_attention(
    "skyformer",
    causal=False,
    key_padding_mask=True,
    approximates="gaussian",
    complexity="O(N m d + m^3)",
    summary="Nystrom on the lifted PSD Gaussian kernel of [Q; K], m landmarks, ridge + Newton-Schulz (Skyformer)",
)
class SkyformerAttention(ProjectedAttention):
    """Skyformer: a Nystrom approximation of :class:`KernelizedAttention`.

    Landmarks are drawn among each sequence's real tokens, ``ceil(m / 2)`` queries and ``floor(m / 2)`` keys:
    uniformly with replacement on every training pass (as upstream), at the stratified quantiles of the real
    tokens in eval mode (deterministic, so evaluation is reproducible and a sample's output depends only on its
    own real tokens).

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): must be False (landmarks summarise the whole sequence).
        num_landmarks (int): m. Default: 128 (the Skyformer LRA setting).
        ridge (float): ``gamma`` added to the landmark kernel. Default: 0.1.
        pinv_iterations (int): Newton-Schulz iterations. Default: 6.
        inverse (str): ``"newton_schulz"`` (default) or ``"solve"`` (exact direct solve).
        random_in_eval (bool): draw random landmarks in eval mode too (upstream behaviour). Default: False.
        scale (float, optional): feature scale, default ``head_dim^{-1/4}``.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        num_landmarks: int = 128,
        ridge: float = 0.1,
        pinv_iterations: int = 6,
        inverse: str = "newton_schulz",
        random_in_eval: bool = False,
        scale: float | None = None,
        **kwargs,
    ):
        super().__init__(dim, num_heads, causal, **kwargs)
        if causal:
            raise ValueError("skyformer has no causal form: its landmarks summarise the whole sequence")
        if num_landmarks < 2:
            raise ValueError(f"num_landmarks must be >= 2 (queries and keys each need one), got {num_landmarks}")
        if inverse not in ("newton_schulz", "solve"):
            raise ValueError(f"inverse must be 'newton_schulz' or 'solve', got {inverse!r}")
        if ridge < 0 or pinv_iterations < 0:
            raise ValueError(f"ridge and pinv_iterations must be >= 0, got {ridge} and {pinv_iterations}")
        self.num_landmarks = num_landmarks
        self.ridge = ridge
        self.pinv_iterations = pinv_iterations
        self.inverse = inverse
        self.random_in_eval = random_in_eval
        self.scale = scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_landmarks={self.num_landmarks}, ridge={self.ridge}"

    def landmark_positions(
        self, batch: int, length: int, key_padding_mask: torch.Tensor | None, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Positions of the landmark queries ``[B, ceil(m / 2)]`` and keys ``[B, floor(m / 2)]`` among the real tokens."""
        from_queries = (self.num_landmarks + 1) // 2
        if self.training or self.random_in_eval:
            draw = real_token_positions(key_padding_mask, batch, length, self.num_landmarks, True, device=device)
            return draw[:, :from_queries], draw[:, from_queries:]
        query_positions = real_token_positions(key_padding_mask, batch, length, from_queries, False, device=device)
        key_positions = real_token_positions(
            key_padding_mask, batch, length, self.num_landmarks - from_queries, False, device=device
        )
        return query_positions, key_positions

    def landmarks(self, q: torch.Tensor, k: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Landmark rows ``[B, H, m, Dh]`` drawn among the real tokens' queries and keys."""
        b, _, n, _ = q.shape
        return skyformer_landmarks(q, k, *self.landmark_positions(b, n, key_padding_mask, q.device))

    def _options(self) -> dict:
        return dict(scale=self.scale, ridge=self.ridge, iterations=self.pinv_iterations, inverse=self.inverse)

    def attend(self, q, k, v, key_padding_mask, x):
        landmarks = self.landmarks(q, k, key_padding_mask)
        return skyformer_attention(q, k, v, landmarks, key_padding_mask, **self._options())

    def project_packed(self, x: torch.Tensor) -> torch.Tensor:
        """Queries, keys and values side by side, ``(B, N, 3 * D)``, from one product with the stacked weights."""
        projections = (self.q_proj, self.k_proj, self.v_proj)
        weight = torch.cat([p.weight for p in projections])
        bias = None if self.q_proj.bias is None else torch.cat([p.bias for p in projections])
        return F.linear(x, weight, bias)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Skyformer through :func:`packed_skyformer_attention` (the same result as :meth:`attend`, faster).

        Args:
            x (torch.Tensor): input of shape ``(B, N, D)``.
            key_padding_mask (torch.Tensor, optional): bool ``(B, N)``, True marks real tokens.

        Returns:
            torch.Tensor: ``(B, N, D)``.
        """
        mask = self.check_input(x, key_padding_mask)
        b, n, _ = x.shape
        positions = self.landmark_positions(b, n, mask, x.device)
        out = packed_skyformer_attention(self.project_packed(x), self.num_heads, *positions, mask, **self._options())
        return self.out_proj(self.dropout(out))

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        return skyformer_attention_weights(q, k, self.landmarks(q, k, mask), mask, **self._options())
