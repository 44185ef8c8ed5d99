"""PSF-Attn (Khalitov, Yu, Cheng, Yang; Neural Networks 152:160-168, 2022, "Sparse factorization of square
matrices with application to neural attention modeling").

The attention matrix is a product of M chord-masked sparse factors whose nonzeros are produced per token by
one MLP per factor; values come from their own MLP; the product runs with gathers (:mod:`core.ops.chord`).
There is no softmax and there are no queries or keys.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.attention.base import ProjectedAttention, check_dims
from core.nn.dropout import Dropout
from core.ops.chord import chord_indices, chord_product, chord_product_matrix
from core.ops.chord_shift import shift_product
from core.registry import register_attention


class FactorMLPs(nn.Module):
    """M independent two-layer MLPs ``f_m(x) = W2_m gelu(W1_m x + b1_m) + b2_m``, evaluated together.

    The first layers are stored stacked in one Linear (block m of its output is ``W1_m x``) and the second
    layers as one ``[M, h, out]`` weight, so factor m depends only on its own hidden units. Outputs come
    positions-last, so the chord product reads them without a transposing copy.

    Args:
        dim (int): input width D.
        num_mlps (int): M.
        hidden (int): hidden width h of each MLP.
        out_features (int): outputs per MLP.
    """

    def __init__(self, dim: int, num_mlps: int, hidden: int, out_features: int):
        super().__init__()
        self.num_mlps, self.hidden = num_mlps, hidden
        self.first = nn.Linear(dim, num_mlps * hidden)
        bound = 1.0 / math.sqrt(hidden)  # nn.Linear's default initialisation, per MLP
        self.second_weight = nn.Parameter(torch.empty(num_mlps, hidden, out_features).uniform_(-bound, bound))
        self.second_bias = nn.Parameter(torch.empty(num_mlps, 1, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, N, D] -> [M, B, out_features, N]``, positions last (the layout of the chord product)."""
        b, n, _ = x.shape
        hidden = torch.matmul(self.first.weight, x.transpose(1, 2)) + self.first.bias[:, None]  # (B, M h, N)
        hidden = F.gelu(hidden).view(b, self.num_mlps, self.hidden, n).transpose(0, 1)  # (M, B, h, N)
        weight = self.second_weight.transpose(1, 2)[:, None]  # (M, 1, out, h)
        return torch.matmul(weight, hidden) + self.second_bias.transpose(1, 2)[:, None]  # (M, B, out, N)


@register_attention(
    "psf",
    causal=True,
    key_padding_mask=True,
    approximates=None,
    complexity="O(N log^2 N d)",
    summary="product of chord-masked sparse factors made by per-factor MLPs, V from an MLP (Khalitov et al., 2022)",
)
class PSFAttention(nn.Module):
    """Multi-head PSF-Attn: ``y = out_proj(P V_0)`` with ``P`` the residual product of M chord factors.

    Each head has its own factors (with ``num_heads=1`` the layer is upstream's single-head PSF-Attn followed
    by an output projection). ``V_0 = g(x)`` is split into heads; factor m of head h has row i given by
    ``f_m(x_i)``. The product covers every pair of tokens when ``N <= 2^M`` (upstream uses ``M = log2 N``); it
    costs ``O(M (M + 1) N C)`` memory traffic, so the value width C sets its price.

    Args:
        dim (int): model width D.
        num_heads (int): heads H; each has its own factors.
        causal (bool): links look back (``i - 2^k``), our extension. Default: False.
        num_factors (int): M; each factor has ``M + 1`` links per row (self plus offsets ``1 .. 2^(M-1)``).
            Default: 10 (full reach up to N = 1024).
        factor_hidden (int): hidden width of each factor MLP (upstream ``Ws``). Default: 32.
        value_dim (int, optional): C, width of the values the factors mix (upstream ``n_channels_V``), split into
            heads; ``out_proj`` maps it back to D. Default: D // 4 (upstream ListOps: D = 512, C = 128).
        value_hidden (int, optional): hidden width of the value MLP g (upstream ``V``). Default: C.
        residual (bool): add V_0 after every factor (upstream ``use_residuals``). Default: True.
        dropout (float): dropout before ``out_proj``. Default: 0.
        out_bias (bool): bias of ``out_proj``. Default: True.
    """

    contract_exemptions = {
        "shared_projections": "PSF-Attn has no queries, keys or value projection, only MLPs and out_proj, so a "
        "softmax layer's q_proj/k_proj have nothing to load into"
    }

    def __init__(
        self,
        dim: int,
        num_heads: int,
        causal: bool = False,
        *,
        num_factors: int = 10,
        factor_hidden: int = 32,
        value_dim: int | None = None,
        value_hidden: int | None = None,
        residual: bool = True,
        dropout: float = 0.0,
        out_bias: bool = True,
    ):
        super().__init__()
        check_dims(dim, num_heads)
        if num_factors < 1:
            raise ValueError(f"num_factors must be >= 1, got {num_factors}")
        value_dim = max(dim // 4 // num_heads, 1) * num_heads if value_dim is None else value_dim
        if value_dim % num_heads != 0:
            raise ValueError(f"value_dim={value_dim} is not divisible by num_heads={num_heads}; each head mixes C / H")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.value_dim, self.value_head_dim = value_dim, value_dim // num_heads
        self.causal = bool(causal)
        self.num_factors = num_factors
        self.num_links = num_factors + 1
        self.residual = residual
        value_hidden = value_dim if value_hidden is None else value_hidden
        self.value_mlp = nn.Sequential(nn.Linear(dim, value_hidden), nn.GELU(), nn.Linear(value_hidden, value_dim))
        self.factor_mlps = FactorMLPs(dim, num_factors, factor_hidden, num_heads * self.num_links)
        self.out_proj = nn.Linear(value_dim, dim, bias=out_bias)
        self.dropout = Dropout(dropout)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, causal={self.causal}, num_factors={self.num_factors}"

    def check_input(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Validate ``x: (B, N, D)`` and ``key_padding_mask: (B, N)`` as every mechanism does."""
        return ProjectedAttention.check_input(self, x, key_padding_mask)

    def factors(self, x: torch.Tensor) -> torch.Tensor:
        """Nonzeros of the M factors per head, ``[M, B, H, N, K]`` (a view of positions-last memory), from ``x``."""
        return self.factor_mlps(x).unflatten(2, (self.num_heads, self.num_links)).transpose(-1, -2)

    def values(self, x: torch.Tensor) -> torch.Tensor:
        """``V_0 = g(x)`` split into heads, ``[B, H, N, C / H]``."""
        b, n, _ = x.shape
        return self.value_mlp(x).view(b, n, self.num_heads, self.value_head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention.

        Args:
            x (torch.Tensor): input of shape ``(B, N, D)``.
            key_padding_mask (torch.Tensor, optional): bool ``(B, N)``, True marks real tokens; links then run
                over the real tokens only, so the output equals that of the sequence without its pads.

        Returns:
            torch.Tensor: ``(B, N, D)``.
        """
        mask = self.check_input(x, key_padding_mask)
        if mask is None:
            out = shift_product(self.factors(x), self.values(x), self.causal, self.residual)
        else:
            index, valid = chord_indices(self.num_links, x.shape[1], mask, self.causal, x.device)
            out = chord_product(self.factors(x), self.values(x), index, valid, self.residual)
        b, h, n, c = out.shape
        return self.out_proj(self.dropout(out.transpose(1, 2).reshape(b, n, h * c)))

    def projection_floor(self, x: torch.Tensor) -> torch.Tensor:
        """The MLPs and the output projection without the factor product (the benchmark's GEMM floor)."""
        b, n, _ = x.shape
        mixed = self.values(x) + self.factors(x).sum(dim=(0, -1))[..., None]
        return self.out_proj(mixed.transpose(1, 2).reshape(b, n, self.value_dim))

    def attention_matrix(self, x: torch.Tensor, key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The dense ``(B, H, N, N)`` product the layer applies to ``V_0`` (residual terms included)."""
        mask = self.check_input(x, key_padding_mask)
        index, valid = chord_indices(self.num_links, x.shape[1], mask, self.causal, x.device)
        return chord_product_matrix(self.factors(x), index, valid, self.residual)
