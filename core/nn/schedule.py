"""Which attention each layer uses.

PrimalFormer = every layer primal; Primal.+X = the canonical backbone X with its last k layers primal
(Chen et al., NeurIPS 2023, section 4).
"""

from __future__ import annotations


def layer_schedule(num_layers: int, base: str = "softmax", replacement: str = "primal", last: int = 0) -> list[str]:
    """``base`` everywhere except the last ``last`` layers, which use ``replacement``.

    Raises:
        ValueError: if ``last`` is outside ``[0, num_layers]``.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    if not 0 <= last <= num_layers:
        raise ValueError(f"cannot replace the last {last} of {num_layers} layers")
    return [base] * (num_layers - last) + [replacement] * last


def primalformer_schedule(num_layers: int) -> list[str]:
    """PrimalFormer: every layer is Primal-Attention."""
    return layer_schedule(num_layers, replacement="primal", last=num_layers)


def primal_plus_schedule(num_layers: int, base: str = "softmax", last: int = 1) -> list[str]:
    """Primal.+X: the ``base`` backbone with its last ``last`` layers primal."""
    return layer_schedule(num_layers, base=base, replacement="primal", last=last)


MODEL_ALIASES = {
    "transformer": "softmax",
    "primalformer": "primalformer",
    "primal+trans": "primal+",
    "primal+": "primal+",
}


def schedule_for_model(model: str, num_layers: int, last: int = 1) -> list[str]:
    """Schedule of a named model: "transformer", "primalformer", "primal+trans" (last ``last`` layers primal),
    or any registry name (every layer uses it)."""
    kind = MODEL_ALIASES.get(model.lower(), model)
    if kind == "primalformer":
        return primalformer_schedule(num_layers)
    if kind == "primal+":
        return primal_plus_schedule(num_layers, last=last)
    return layer_schedule(num_layers, base=kind)
