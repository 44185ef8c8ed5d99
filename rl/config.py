"""Training configuration of the Decision Transformer suite, with the Primal.+DT run script's hyperparameters
(Chen et al., NeurIPS 2023, ``run_primal_dt.sh``: K = 20, embed 256, 3 layers, 4 heads, lr 1e-3, 10k warm-up
steps, batch 64, weight decay 1e-4, gradient clip 0.25, eta = 0.05) as defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import core
from core.nn import layer_schedule, primal_plus_schedule
from rl.model import DecisionTransformer

MODEL_NAMES = ("dt", "primal+dt")


@dataclass
class TrainConfig:
    """Everything a training run needs; saved in every checkpoint and in ``config.json``.

    Attributes mirror the ``python -m rl train`` flags (see ``--help``).
    """

    dataset: str = ""
    env: str = ""
    env_version: str = "v5"
    model: str = "primal+dt"
    primal_layers: int = 1
    low_rank: int | None = None
    primal_original_padding: bool = False
    context_length: int = 20
    embed_dim: int = 256
    num_layers: int = 3
    num_heads: int = 4
    dropout: float = 0.1
    activation: str = "relu"
    max_ep_len: int = 1000
    rtg_scale: float = 1000.0
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 10000
    grad_clip: float = 0.25
    eta: float = 0.05
    max_steps: int = 100000
    max_minutes: float | None = None
    eval_every: int = 10000
    eval_episodes: int = 10
    final_eval_episodes: int = 100
    targets: list[float] = field(default_factory=list)
    checkpoint_every: int = 1000
    seed: int = 1
    device: str = "auto"
    run_dir: str = "runs/rl"

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown configuration keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attention_schedule(model: str, num_layers: int, primal_layers: int = 1) -> list[str]:
    """Attention name per block.

    Args:
        model: "dt" (softmax everywhere), "primal+dt" (softmax with the last ``primal_layers`` blocks primal),
            or any causal registry name (every block uses it, e.g. "linear", "cosine", "primal").

    Raises:
        ValueError: for an unknown or non-causal mechanism.
    """
    name = model.lower()
    if name == "dt":
        return layer_schedule(num_layers, base="softmax")
    if name == "primal+dt":
        return primal_plus_schedule(num_layers, last=primal_layers)
    causal = core.list_attentions(causal=True)
    if name not in causal:
        raise ValueError(f"--model must be one of {list(MODEL_NAMES)} or a causal attention {causal}, got {model!r}")
    return layer_schedule(num_layers, base=name)


def build_model(config: TrainConfig, state_dim: int, act_dim: int, low_rank: int) -> DecisionTransformer:
    """The Decision Transformer the configuration describes, with Primal-Attention's s = ``low_rank``."""
    schedule = attention_schedule(config.model, config.num_layers, config.primal_layers)
    return DecisionTransformer(
        state_dim,
        act_dim,
        schedule,
        embed_dim=config.embed_dim,
        num_heads=config.num_heads,
        context_length=config.context_length,
        max_ep_len=config.max_ep_len,
        dropout=config.dropout,
        activation=config.activation,
        attention_options={"primal": {"low_rank": low_rank, "original_padding": config.primal_original_padding}},
    )
