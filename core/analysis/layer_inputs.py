"""Run a model and hand the input of chosen attention layers to a callback (the shared loop of the analysis tools)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn


@torch.no_grad()
def run_with_layer_inputs(
    model: nn.Module,
    inputs: Iterable,
    layers: dict[str, nn.Module],
    visit: Callable[[str, nn.Module, torch.Tensor, torch.Tensor | None], None],
) -> None:
    """Run ``model`` in eval mode on each batch; before each listed layer runs, call
    ``visit(name, layer, x, key_padding_mask)`` with the input it receives (mask None when it gets none).

    Args:
        model: the model to run; its train/eval mode is restored afterwards.
        inputs: batches; a tuple is unpacked into positional arguments, a dict into keyword arguments.
        layers: name -> module to watch.
        visit: the callback.
    """
    handles = []
    for name, module in layers.items():

        def hook(mod, args, kwargs, name=name):
            mask = kwargs.get("key_padding_mask", args[1] if len(args) > 1 else None)
            visit(name, mod, args[0], mask)

        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    was_training = model.training
    model.eval()
    try:
        for batch in inputs:
            if isinstance(batch, dict):
                model(**batch)
            elif isinstance(batch, list | tuple):
                model(*batch)
            else:
                model(batch)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
