"""Nystromformer (Xiong et al., AAAI 2021, "Nystromformer: A Nystrom-Based Algorithm for Approximating
Self-Attention"): softmax attention through m segment-mean landmarks and an iterative pseudo-inverse, with the
optional depthwise convolution over the values that the paper adds as a skip connection.
"""

from __future__ import annotations

import torch
from torch import nn

from core.attention.base import ProjectedAttention
from core.ops.nystrom import nystrom_attention, nystrom_attention_weights
from core.registry import register_attention


@register_attention(
    "nystrom",
    causal=False,
    key_padding_mask=True,
    approximates="softmax",
    complexity="O(N m d + m^3)",
    summary="softmax(Q K~^T) pinv(softmax(Q~ K~^T)) softmax(Q~ K^T) V, segment-mean landmarks (Nystromformer)",
)
class NystromAttention(ProjectedAttention):
    """Nystromformer attention.

    Args:
        dim (int): model width D.
        num_heads (int): heads H.
        causal (bool): must be False (landmark pooling mixes future tokens into every query's weights).
        num_landmarks (int): m. Default: 64 (the paper's LRA setting; Skyformer's LRA runs use 128).
        pinv_iterations (int): Newton-Schulz iterations. Default: 6.
        inverse (str): ``"newton_schulz"`` (default) or ``"exact"`` (``torch.linalg.pinv``).
        conv_kernel_size (int, optional): kernel of the depthwise convolution over the values along the sequence
            (one kernel per head, added to the output); None disables it. The paper's LRA code uses 35.
        **kwargs: ``qkv_bias``, ``out_bias``, ``dropout`` of :class:`ProjectedAttention`.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        num_landmarks: int = 64,
        pinv_iterations: int = 6,
        inverse: str = "newton_schulz",
        conv_kernel_size: int | None = None,
        **kwargs,
    ):
        super().__init__(dim, num_heads, causal, **kwargs)
        if causal:
            raise ValueError("nystrom has no causal form: segment-mean landmarks mix future tokens into every query")
        if num_landmarks < 1:
            raise ValueError(f"num_landmarks must be positive, got {num_landmarks}")
        if inverse not in ("newton_schulz", "exact"):
            raise ValueError(f"inverse must be 'newton_schulz' or 'exact', got {inverse!r}")
        if conv_kernel_size is not None and (conv_kernel_size < 1 or conv_kernel_size % 2 == 0):
            raise ValueError(f"conv_kernel_size must be a positive odd integer or None, got {conv_kernel_size}")
        self.num_landmarks = num_landmarks
        self.pinv_iterations = pinv_iterations
        self.inverse = inverse
        self.conv = None
        if conv_kernel_size is not None:
            self.conv = nn.Conv2d(
                num_heads, num_heads, (conv_kernel_size, 1), padding=(conv_kernel_size // 2, 0), groups=num_heads, bias=False
            )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_landmarks={self.num_landmarks}, pinv_iterations={self.pinv_iterations}"

    def attend(self, q, k, v, key_padding_mask, x):
        out = nystrom_attention(q, k, v, self.num_landmarks, key_padding_mask, self.pinv_iterations, self.inverse)
        if self.conv is not None:
            if key_padding_mask is not None:
                v = v.masked_fill(~key_padding_mask[:, None, :, None], 0.0)
            out = out + self.conv(v)  # (B, H, N, Dh): heads are the conv channels
        return out

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``F pinv(A) B`` of shape ``(B, H, N, N)`` (the convolution skip is not part of it)."""
        mask = self.check_input(x, key_padding_mask)
        q, k, _ = self.project_qkv(x)
        return nystrom_attention_weights(q, k, self.num_landmarks, mask, self.pinv_iterations, self.inverse)
