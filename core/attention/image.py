"""Linear attention over image feature maps (the ``ImageLinearAttention`` of lucidrains'
linear-attention-transformer, with the normalisation of Shen et al., 2021, "Efficient Attention: Attention
with Linear Complexities").

Per head, with convolutional projections q, k (``[dk, P]``) and v (``[dv, P]``) over the P = H W positions:

    q <- softmax_channels(q dk^-1/4) (optional),  k <- softmax_positions(k dk^-1/4),  out = (k v^T)^T q

so each output position is a convex combination of values (when queries are normalised) at O(P dk dv) cost.
Not a sequence mechanism: it is not in the registry.
"""

from __future__ import annotations

import torch
from torch import nn


class LinearImageAttention(nn.Module):
    """Multi-head linear attention on ``(B, C, H, W)`` maps, with convolutional q/k/v and output projections.

    Args:
        channels (int): C, input and output channels.
        num_heads (int): heads. Default: 8.
        key_dim (int): dk, query/key channels per head. Default: 64.
        value_dim (int): dv, value channels per head. Default: 64.
        kernel_size (int): kernel of the q/k/v convolutions. Default: 1.
        padding (int): their padding. Default: 0.
        stride (int): their stride; the output map has their output size. Default: 1.
        norm_queries (bool): softmax the queries over channels (switchable upstream, since a review of the
            paper reported better results without it). Default: True.
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 8,
        key_dim: int = 64,
        value_dim: int = 64,
        kernel_size: int = 1,
        padding: int = 0,
        stride: int = 1,
        norm_queries: bool = True,
    ):
        super().__init__()
        if min(channels, num_heads, key_dim, value_dim) < 1:
            raise ValueError(
                f"channels, num_heads, key_dim and value_dim must be >= 1, got {channels}, {num_heads}, {key_dim}, "
                f"{value_dim}"
            )
        self.channels, self.num_heads, self.key_dim, self.value_dim = channels, num_heads, key_dim, value_dim
        self.norm_queries = norm_queries
        conv = {"kernel_size": kernel_size, "padding": padding, "stride": stride}
        self.q_conv = nn.Conv2d(channels, num_heads * key_dim, **conv)
        self.k_conv = nn.Conv2d(channels, num_heads * key_dim, **conv)
        self.v_conv = nn.Conv2d(channels, num_heads * value_dim, **conv)
        self.out_conv = nn.Conv2d(num_heads * value_dim, channels, 1)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, num_heads={self.num_heads}, norm_queries={self.norm_queries}"

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """``(B, h d, H, W) -> (B, h, d, H W)``."""
        return t.flatten(2).unflatten(1, (self.num_heads, -1))

    def normalized_qkv(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries ``(B, h, dk, P)``, keys ``(B, h, dk, P + P_ctx)``, values ``(B, h, dv, P + P_ctx)``, normalised."""
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected x of shape (B, {self.channels}, H, W), got {tuple(x.shape)}")
        scale = self.key_dim**-0.25
        q = self._heads(self.q_conv(x)) * scale
        k, v = self._heads(self.k_conv(x)), self._heads(self.v_conv(x))
        if context is not None:
            if context.dim() != 4 or context.shape[:2] != x.shape[:2]:
                expected = f"({x.shape[0]}, {self.channels}, H', W')"
                raise ValueError(f"expected context of shape {expected}, got {tuple(context.shape)}")
            k = torch.cat([k, self._heads(self.k_conv(context))], dim=-1)
            v = torch.cat([v, self._heads(self.v_conv(context))], dim=-1)
        k = torch.softmax(k * scale, dim=-1)
        if self.norm_queries:
            q = torch.softmax(q, dim=-2)
        return q, k, v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """Attention over all positions of the map (and of an optional context map).

        Args:
            x (torch.Tensor): ``(B, C, H, W)``.
            context (torch.Tensor, optional): ``(B, C, H', W')`` whose positions are extra keys and values.

        Returns:
            torch.Tensor: ``(B, C, H_out, W_out)``, the convolutions' output size (``(H, W)`` with the defaults).
        """
        q, k, v = self.normalized_qkv(x, context)
        summary = torch.matmul(k, v.transpose(-1, -2))  # (B, h, dk, dv)
        out = torch.matmul(summary.transpose(-1, -2), q)  # (B, h, dv, P)
        return self.out_conv(out.reshape(x.shape[0], self.num_heads * self.value_dim, *self.output_size(x)))

    def output_size(self, x: torch.Tensor) -> tuple[int, int]:
        """Spatial size ``(H_out, W_out)`` of the q/k/v convolutions applied to ``x``."""
        conv = self.q_conv
        height, width = (
            (length + 2 * conv.padding[i] - conv.kernel_size[i]) // conv.stride[i] + 1 for i, length in enumerate(x.shape[-2:])
        )
        return height, width

    def attention_matrix(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """The explicit ``(B, h, P, P + P_ctx)`` matrix applied to the values (rows sum to 1 with normalised queries)."""
        q, k, _ = self.normalized_qkv(x, context)
        return torch.matmul(q.transpose(-1, -2), k)
