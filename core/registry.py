"""Registry of attention mechanisms: name -> class, with capability flags.

A mechanism registers itself with :func:`register_attention`; users build it by name with
:func:`build_attention`, list names with :func:`list_attentions` and read its capabilities with
:func:`attention_info`. The contract tests parametrise over :func:`list_attentions`, so every new
entry is tested for shapes, gradients, causality and masks without writing a new test.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

_APPROXIMATES = ("softmax", "gaussian", None)


@dataclass(frozen=True)
class AttentionInfo:
    """Capabilities of a registered mechanism.

    Attributes:
        name: registry name.
        causal: the mechanism can be built with ``causal=True``.
        key_padding_mask: it honours ``key_padding_mask`` (padding never changes a real token's output).
        approximates: the exact attention it approximates, "softmax", "gaussian" or None (its own kind).
        incremental: causal token-by-token decoding through ``step`` is available.
        complexity: time complexity in N (sequence length), e.g. "O(N s d)".
        summary: one line on the math and the paper.
        defaults: options the registered entry fixes (aliases such as ``performer`` set them).
    """

    name: str
    causal: bool
    key_padding_mask: bool
    approximates: str | None
    incremental: bool
    complexity: str
    summary: str = ""
    defaults: dict = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class _Entry:
    cls: type[nn.Module]
    info: AttentionInfo


_REGISTRY: dict[str, _Entry] = {}
_LOADED = False


def register_attention(
    name: str,
    *,
    causal: bool,
    key_padding_mask: bool,
    approximates: str | None,
    incremental: bool = False,
    complexity: str,
    summary: str = "",
    defaults: dict[str, Any] | None = None,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that registers an attention module under ``name``.

    The class is constructed as ``cls(dim, num_heads, causal=..., **defaults, **options)``. The same
    class may be registered under several names with different ``defaults`` (aliases).

    Raises:
        ValueError: if the name is taken or a flag is invalid.
    """
    if approximates not in _APPROXIMATES:
        raise ValueError(f"approximates must be one of {_APPROXIMATES}, got {approximates!r}")
    if incremental and not causal:
        raise ValueError(f"{name}: incremental decoding needs a causal mechanism")

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY and _REGISTRY[name].cls is not cls:
            raise ValueError(f"attention name {name!r} is already registered by {_REGISTRY[name].cls.__name__}")
        info = AttentionInfo(
            name=name,
            causal=causal,
            key_padding_mask=key_padding_mask,
            approximates=approximates,
            incremental=incremental,
            complexity=complexity,
            summary=summary,
            defaults=dict(defaults or {}),
        )
        _REGISTRY[name] = _Entry(cls=cls, info=info)
        return cls

    return decorator


def _load_builtin_mechanisms() -> None:
    """Import every module of ``core.attention`` once, so that their decorators run."""
    global _LOADED
    if _LOADED:
        return
    package = importlib.import_module("core.attention")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"core.attention.{module.name}")
    _LOADED = True


def list_attentions(filter: str = "*", *, causal: bool | None = None, key_padding_mask: bool | None = None) -> list[str]:
    """Sorted registry names matching a glob ``filter`` and, optionally, capability flags."""
    _load_builtin_mechanisms()
    names = []
    for name, entry in _REGISTRY.items():
        if not fnmatch.fnmatch(name, filter):
            continue
        if causal is not None and entry.info.causal != causal:
            continue
        if key_padding_mask is not None and entry.info.key_padding_mask != key_padding_mask:
            continue
        names.append(name)
    return sorted(names)


def _entry(name: str) -> _Entry:
    _load_builtin_mechanisms()
    if name not in _REGISTRY:
        close = [n for n in _REGISTRY if name.lower() in n or n in name.lower()]
        hint = f" Did you mean {close}?" if close else ""
        raise KeyError(f"unknown attention {name!r}.{hint} Available: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def attention_info(name: str) -> AttentionInfo:
    """Capability flags of the mechanism registered as ``name``."""
    return _entry(name).info


def attention_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``."""
    return _entry(name).cls


def build_attention(name: str, dim: int, num_heads: int, causal: bool = False, **options: Any) -> nn.Module:
    """Build a registered self-attention module.

    Args:
        name: registry name, see :func:`list_attentions`.
        dim: model width; the input is ``(B, N, dim)``.
        num_heads: number of heads; ``dim`` must be divisible by it.
        causal: build the causal (autoregressive) form. Raises ValueError where the math does not allow it.
        **options: mechanism-specific options (e.g. ``low_rank`` for ``primal``); they override the
            registered defaults.

    Returns:
        nn.Module called as ``attn(x, key_padding_mask=None)`` returning ``(B, N, dim)``.
    """
    entry = _entry(name)
    if causal and not entry.info.causal:
        causal_names = list_attentions(causal=True)
        raise ValueError(
            f"attention {name!r} has no causal form (its math would leak future tokens); "
            f"causal-capable mechanisms: {causal_names}"
        )
    kwargs = {**entry.info.defaults, **options}
    module = entry.cls(dim, num_heads, causal=causal, **kwargs)
    module.registry_name = name
    return module
