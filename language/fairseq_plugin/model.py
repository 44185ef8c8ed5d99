"""fairseq language models whose decoder self-attention comes from ``core`` (Primal-Attention, Chen et al., NeurIPS
2023, Table 7b: "Primal.+Trans." on WikiText-103).

- ``--arch core_attention_lm``: fairseq's ``transformer_lm`` (same defaults) with ``--core-attention NAME`` in the
  layers ``--core-attention-layers`` (e.g. ``-1``, ``0,2``, ``all``), built with ``--core-attention-options``
  (a JSON object of mechanism options). Without ``--core-attention`` it is exactly ``transformer_lm``.
- ``--arch transformer_lm_primal``: the paper's Primal.+ setting: the last decoder layer's self-attention is causal
  Primal-Attention with s = 30 (``{"low_rank": 30}``); every other layer keeps fairseq's softmax attention.

The replaced layers start from the same q/k/v/out projections fairseq initialised (shared parameter names), so a
softmax baseline and a primal model built with the same seed differ only in the mechanism.
"""

import json
from dataclasses import dataclass, field

from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig
from fairseq.utils import safe_getattr

import core
from core.attention.base import load_shared_projections
from language.fairseq_plugin.adapter import CoreSelfAttention


@dataclass
class CoreAttentionLMConfig(TransformerLanguageModelConfig):
    core_attention: str = field(
        default="",
        metadata={"help": "registry name of a causal core attention (core.list_attentions(causal=True)); "
                  "empty keeps fairseq's softmax attention everywhere"},
    )
    core_attention_layers: str = field(
        default="-1",
        metadata={"help": "decoder layers that use --core-attention: comma-separated indices, negative counts from "
                  "the end (-1 = last layer, the paper's Primal.+), or 'all'"},
    )
    core_attention_options: str = field(
        default="{}",
        metadata={"help": 'JSON object of mechanism options, e.g. \'{"low_rank": 30}\' for primal (s)'},
    )


def parse_layers(spec: str, num_layers: int) -> list[int]:
    """Decoder layer indices named by ``spec`` ("all", or comma-separated indices; negative counts from the end).

    Raises:
        ValueError: for an empty spec, a non-integer entry or an index outside ``[-num_layers, num_layers)``.
    """
    spec = str(spec).strip()
    if spec == "all":
        return list(range(num_layers))
    indices = []
    for part in spec.split(","):
        part = part.strip()
        try:
            index = int(part)
        except ValueError:
            raise ValueError(
                f"--core-attention-layers {spec!r}: {part!r} is not an integer; use e.g. '-1', '0,2' or 'all'"
            ) from None
        if not -num_layers <= index < num_layers:
            raise ValueError(
                f"--core-attention-layers {spec!r}: layer {index} does not exist in a {num_layers}-layer decoder"
            )
        indices.append(index % num_layers)
    return sorted(set(indices))


def parse_options(text: str) -> dict:
    """Mechanism options from a JSON object string (empty -> no options)."""
    if not str(text).strip():
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--core-attention-options must be a JSON object, got {text!r}: {error}") from None
    if not isinstance(options, dict):
        raise ValueError(f"--core-attention-options must be a JSON object like '{{\"low_rank\": 30}}', got {text!r}")
    return options


def replace_self_attention(decoder, name: str, layers: list[int], options: dict) -> None:
    """Put ``core`` mechanism ``name`` in the self-attention of the given decoder layers (in place).

    The new module receives the q/k/v/out projections of the fairseq attention it replaces wherever the shapes
    agree (a mechanism with its own output layout keeps its own initialisation for that tensor).
    """
    if name not in core.list_attentions(causal=True):
        raise ValueError(
            f"--core-attention {name!r} is not a causal core attention; choose one of {core.list_attentions(causal=True)}"
        )
    for index in layers:
        layer = decoder.layers[index]
        old = layer.self_attn
        new = CoreSelfAttention(name, old.embed_dim, old.num_heads, **options)
        own = new.attention.state_dict()
        shared = {k: v for k, v in old.state_dict().items() if k in own and own[k].shape == v.shape}
        load_shared_projections(new.attention, shared)
        layer.self_attn = new.to(device=old.q_proj.weight.device, dtype=old.q_proj.weight.dtype)


@register_model("core_attention_lm", dataclass=CoreAttentionLMConfig)
class CoreAttentionLanguageModel(TransformerLanguageModel):
    """``transformer_lm`` with core attention in chosen decoder layers."""

    @classmethod
    def build_model(cls, args, task):
        model = super().build_model(args, task)
        name = safe_getattr(args, "core_attention", "")
        if name:
            layers = parse_layers(safe_getattr(args, "core_attention_layers", "-1"), len(model.decoder.layers))
            options = parse_options(safe_getattr(args, "core_attention_options", "{}"))
            replace_self_attention(model.decoder, name, layers, options)
        return model


@register_model_architecture("core_attention_lm", "transformer_lm_primal")
def transformer_lm_primal(args):
    """Primal.+Trans.: fairseq's transformer_lm defaults, causal Primal-Attention (s = 30) in the last layer."""
    args.core_attention = safe_getattr(args, "core_attention", "primal") or "primal"
    args.core_attention_layers = safe_getattr(args, "core_attention_layers", "-1")
    args.core_attention_options = safe_getattr(args, "core_attention_options", '{"low_rank": 30}')
