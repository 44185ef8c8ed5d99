"""The shared LRA model of the PyTorch LRA code bases (Nystromformer, Skyformer, Primal-Attention: Chen et al.,
NeurIPS 2023), with attention built by registry name.

Token embedding (or a linear map of continuous inputs, for Adding) plus learned positions, pre-norm encoder
layers from :func:`core.nn.build_layers`, a final LayerNorm, mean pooling over real tokens and an MLP head
``Linear(D, hidden) -> ReLU -> Linear(hidden, classes)``. Retrieval is a dual encoder with shared weights whose
head reads ``[x0, x1, x0 * x1, x0 - x1]``.

``model.positions = false`` drops the position embeddings, as PSF-Attn's Adding model (Khalitov et al., 2022); the
model then reads any length up to its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.nn import LearnedPositionalEmbedding, build_layers, mean_pool, schedule_for_model
from lra.config import primal_settings


class SequenceEncoder(nn.Module):
    """Embeddings, encoder layers and pooling: ``(B, N)`` ids or ``(B, N, F)`` features -> ``(B, D)``.

    Args:
        schedule (list[str]): attention registry name per layer.
        max_len (int): the model's sequence length (size of the position table).
        dim (int): width D.
        num_heads (int): heads H.
        ffn_dim (int): hidden width of the feed-forward blocks.
        vocab_size (int): token vocabulary; 0 means continuous inputs of ``input_features`` features.
        input_features (int): features per step when ``vocab_size`` is 0.
        dropout (float): dropout after the embeddings and in every layer.
        attention_options (dict): per-name options for :func:`core.nn.build_layers`.
        positions (bool): add learned position embeddings (LRA); PSF's Adding model has none.
    """

    def __init__(
        self,
        schedule: list[str],
        max_len: int,
        dim: int,
        num_heads: int,
        ffn_dim: int,
        vocab_size: int,
        input_features: int = 0,
        dropout: float = 0.1,
        attention_options: dict[str, dict[str, Any]] | None = None,
        positions: bool = True,
    ) -> None:
        super().__init__()
        if vocab_size > 0:
            self.embed = nn.Embedding(vocab_size, dim)
            nn.init.normal_(self.embed.weight, std=0.02)
        elif input_features > 0:
            self.embed = nn.Linear(input_features, dim)
        else:
            raise ValueError("SequenceEncoder needs vocab_size > 0 (tokens) or input_features > 0 (continuous inputs)")
        self.vocab_size = vocab_size
        if positions:
            self.positions = LearnedPositionalEmbedding(max_len, dim, dropout=dropout, init="normal")
        else:
            self.positions = nn.Dropout(dropout)
        self.layers = build_layers(
            schedule, dim, num_heads, ffn_dim, dropout=dropout, norm_first=True, attention_options=attention_options
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``inputs``: ``(B, N)`` int ids or ``(B, N, F)`` floats; ``mask``: ``(B, N)`` bool, True = real -> ``(B, D)``."""
        x = self.positions(self.embed(inputs))
        for layer in self.layers:
            x = layer(x, key_padding_mask=mask)
        return mean_pool(self.norm(x), mask)


class LRAModel(nn.Module):
    """Classifier (or regressor with one output) over one sequence, or over a pair for Retrieval.

    Args:
        encoder (SequenceEncoder): shared by both documents of a pair.
        num_outputs (int): classes (1 for regression).
        head_hidden (int): hidden width of the MLP head.
        dual (bool): Retrieval's two-tower head on ``[x0, x1, x0 * x1, x0 - x1]``.
    """

    def __init__(self, encoder: SequenceEncoder, num_outputs: int, head_hidden: int, dual: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.dual = dual
        dim = encoder.norm.normalized_shape[0]
        self.head = nn.Sequential(
            nn.Linear(4 * dim if dual else dim, head_hidden), nn.ReLU(), nn.Linear(head_hidden, num_outputs)
        )

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``(B, classes)`` (or ``(B, 1)`` for regression) from a batch of :class:`lra.data.arrays.Collate`."""
        inputs = batch["inputs"] if "inputs" in batch else batch["input_ids"]
        pooled = self.encoder(inputs, batch["mask"])
        if self.dual:
            other = self.encoder(batch["input_ids_1"], batch["mask_1"])
            pooled = torch.cat([pooled, other, pooled * other, pooled - other], dim=-1)
        return self.head(pooled)


def build_model(
    config: dict[str, Any], attention: str, max_len: int, extra_options: dict[str, Any] | None = None
) -> tuple[LRAModel, float, list[str]]:
    """The task's model with ``attention`` and the KSVD weight eta.

    Args:
        config: the task settings (see :mod:`lra.config`).
        attention: a registry name (every layer uses it), or ``primalformer`` / ``primal+trans`` / ``transformer``.
        max_len: the model's sequence length.
        extra_options: options for the mechanism named by ``attention`` (e.g. ``num_landmarks`` for Nystrom).

    Returns:
        ``(model, eta, schedule)``; eta is 0 when no layer is primal.
    """
    model_cfg = config["model"]
    schedule = schedule_for_model(attention, model_cfg["num_layers"])
    options = {name: dict(values) for name, values in config.get("attention_options", {}).items()}
    eta = 0.0
    if "primal" in schedule:
        primal_options, eta = primal_settings(config, attention)
        options["primal"] = {**options.get("primal", {}), **primal_options, "max_seq_len": max_len}
    if extra_options:
        target = next((name for name in schedule if name != "softmax"), schedule[0])
        options[target] = {**options.get(target, {}), **extra_options}
    kind = config["kind"]
    encoder = SequenceEncoder(
        schedule,
        max_len,
        model_cfg["dim"],
        model_cfg["num_heads"],
        model_cfg["ffn_dim"],
        vocab_size=config["vocab_size"] if kind != "adding" else 0,
        input_features=2 if kind == "adding" else 0,
        dropout=model_cfg["dropout"],
        attention_options={name: options[name] for name in set(schedule) if name in options},
        positions=model_cfg.get("positions", True),
    )
    model = LRAModel(encoder, config["num_classes"], model_cfg["head_hidden"], dual=kind == "pair")
    return model, eta, schedule
