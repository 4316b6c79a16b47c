"""Bottleneck features: what a classifier's last linear layer reads (seed 002 embeds these with t-SNE).

Captured with a forward pre-hook while the classifier runs its own forward pass, so the features are
exactly the ones its logits were computed from (same preprocessing, same autocast), not a second,
reimplemented pass that could drift from it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def bottleneck_layer(model: nn.Module, head_alone: bool = False) -> tuple[str, nn.Linear]:
    """(name, layer) of ``model``'s last ``nn.Linear``, looked for in its ``head`` when it has one, so
    Inception's auxiliary classifier (registered beside the head) is never taken for the bottleneck.

    ``head_alone``: ``model`` is a full classifier's head by itself (a grid cell's, its frozen backbone run
    apart); the name is then given as in the full classifier (``head.<name>``), so a report names the layer
    the same way for a grid cell and for a full run. This is the one place that names the layer.
    """
    if head_alone:
        part, prefix = model, "head."
    elif isinstance(getattr(model, "head", None), nn.Module):
        part, prefix = model.head, "head."
    else:
        part, prefix = model, ""
    found = [(f"{prefix}{name}", m) for name, m in part.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no linear layer: it has no bottleneck to read")
    return found[-1]


def bottleneck_features(layer: nn.Module, forward: Callable[[], T]) -> tuple[torch.Tensor, T]:
    """Run ``forward()`` (which must run ``layer``, once or batch by batch) and return (the inputs ``layer``
    saw, flattened to (N, D) float32 on the CPU in call order, ``forward``'s result)."""
    seen: list[torch.Tensor] = []

    def hook(_module, inputs):
        seen.append(inputs[0].detach().flatten(1).float().cpu())

    handle = layer.register_forward_pre_hook(hook)
    try:
        result = forward()
    finally:
        handle.remove()
    if not seen:
        raise ValueError(f"{type(layer).__name__} did not run in the forward pass")
    return torch.cat(seen), result
