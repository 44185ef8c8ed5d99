"""Transformer building blocks shared by the suites: layers, positions, pooling and layer schedules."""

from core.nn.dropout import Dropout, fast_dropout
from core.nn.layers import DecoderBlock, EncoderLayer, FeedForward, build_layers
from core.nn.pooling import cls_pool, flatten_pool, mean_pool
from core.nn.positions import LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from core.nn.schedule import layer_schedule, primal_plus_schedule, primalformer_schedule, schedule_for_model

__all__ = [
    "DecoderBlock",
    "Dropout",
    "EncoderLayer",
    "FeedForward",
    "LearnedPositionalEmbedding",
    "SinusoidalPositionalEncoding",
    "build_layers",
    "fast_dropout",
    "cls_pool",
    "flatten_pool",
    "layer_schedule",
    "mean_pool",
    "primal_plus_schedule",
    "primalformer_schedule",
    "schedule_for_model",
]
