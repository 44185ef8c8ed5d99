"""Adapters for the public packages people use today, so a benchmark table shows where we stand.

Each adapter builds the package's own self-attention module and exposes ``module(x)`` on ``(B, N, D)``.
Install them with ``pip install -e .[bench]``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

PEERS: dict[str, str] = {
    "performer": "performer-pytorch (FAVOR+, lucidrains)",
    "nystrom": "nystrom-attention (lucidrains)",
    "linear-transformer": "linear-attention-transformer (lucidrains)",
}


class _PeerModule(nn.Module):
    """Wraps a peer module; its projections are inside it, so there is no separate floor."""

    def __init__(self, inner: nn.Module, call: Callable) -> None:
        super().__init__()
        self.inner = inner
        self._call = call

    def forward(self, x):
        return self._call(self.inner, x)

    def projection_floor(self, x):
        raise ValueError("peer modules have no separate projection floor")


def _performer(dim: int, heads: int, causal: bool, length: int, nb_features: int | None = None) -> nn.Module:
    from performer_pytorch import SelfAttention

    module = SelfAttention(dim=dim, heads=heads, causal=causal, dim_head=dim // heads, nb_features=nb_features)
    return _PeerModule(module, lambda m, x: m(x))


def _nystrom(dim: int, heads: int, causal: bool, length: int, num_landmarks: int = 64) -> nn.Module:
    if causal:
        raise ValueError("nystrom-attention has no causal mode")
    from nystrom_attention import NystromAttention

    module = NystromAttention(dim=dim, dim_head=dim // heads, heads=heads, num_landmarks=num_landmarks)
    return _PeerModule(module, lambda m, x: m(x))


def _linear_transformer(dim: int, heads: int, causal: bool, length: int) -> nn.Module:
    from linear_attention_transformer.linear_attention_transformer import SelfAttention

    module = SelfAttention(dim, heads, causal=causal, dim_head=dim // heads)
    return _PeerModule(module, lambda m, x: m(x))


_BUILDERS = {"performer": _performer, "nystrom": _nystrom, "linear-transformer": _linear_transformer}


def build_peer(name: str, dim: int, heads: int, causal: bool, length: int, **options) -> nn.Module:
    """Build peer ``name`` (see :data:`PEERS`); ``options`` are the peer's own (``nb_features`` for performer,
    ``num_landmarks`` for nystrom), given on the command line as ``--options '{"peer:performer": {...}}'``.

    Raises:
        KeyError: unknown peer. ImportError: the package is not installed.
    """
    if name not in _BUILDERS:
        raise KeyError(f"unknown peer {name!r}; known: {sorted(_BUILDERS)}")
    try:
        return _BUILDERS[name](dim, heads, causal, length, **options)
    except ModuleNotFoundError as error:
        raise ImportError(f"peer {name!r} needs {PEERS[name]}: pip install -e '.[bench]' ({error})") from error


def installed_peers() -> list[str]:
    """Peers whose package imports here."""
    import importlib.util

    modules = {"performer": "performer_pytorch", "nystrom": "nystrom_attention",
               "linear-transformer": "linear_attention_transformer"}
    return [name for name, module in modules.items() if importlib.util.find_spec(module) is not None]
