"""CUDA out of memory: run the job again with half its batch, and a way to cause it on a CPU.

An OOM is not a failure of the experiment: the same job fits with a smaller
batch. The runner turns the error into ``Resubmit`` with the batch halved and a
record appended to ``params["oom_retries"]``, so the row says what happened;
the lifecycle puts the job back in the queue without spending an attempt. At a
batch of one there is nothing left to halve and the error stands.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from worker.lifecycle import Resubmit


def halve_batch(params: dict[str, Any], path: tuple[str, ...], error: torch.OutOfMemoryError) -> Resubmit | None:
    """A Resubmit with ``params[path]`` halved, or None when it is already 1."""
    node = params
    for key in path[:-1]:
        node = node[key]
    batch = int(node[path[-1]])
    if batch <= 1:
        return None
    again = copy.deepcopy(params)
    node = again
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = batch // 2
    first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else "out of memory"
    again["oom_retries"] = [*params.get("oom_retries", []), {"batch_size": batch, "error": first_line}]
    return Resubmit(again, f"CUDA out of memory at batch size {batch}: retrying with {batch // 2}")


@contextmanager
def simulated_oom(limit: int | None) -> Iterator[None]:
    """While active, any forward pass that builds a graph over more than ``limit`` samples raises
    torch.OutOfMemoryError. Gradient-free passes (feature extraction, classification) are spared,
    as inference needs no stored activations."""
    if limit is None:
        yield
        return

    def hook(module: torch.nn.Module, args: tuple) -> None:
        x = args[0] if args else None
        if torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.ndim > 0 and x.shape[0] > limit:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory (simulated: a batch of {x.shape[0]} > ATELIER_FAULT_OOM_ABOVE_BATCH={limit})"
            )

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()
