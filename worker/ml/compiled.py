"""torch.compile where it pays: on CUDA by default, never in the way.

A long-lived worker child compiles a module once and reuses it for every job after
(the style VGG sits in the child's cache; dynamo's code cache serves the training
step of every model of one architecture). ``nn.Module.compile`` compiles in place,
so state dicts, checkpoints and attribute access are unchanged. A compilation that
fails runs eager: dynamo's ``suppress_errors`` logs the failure once and falls back.
"""

from __future__ import annotations

import logging

import torch

from core.settings import COMPILE_MODES  # the one list ATELIER_COMPILE is checked against

log = logging.getLogger(__name__)


def wanted(mode: str, device: torch.device) -> bool:
    """Whether ``mode`` (ATELIER_COMPILE) compiles on ``device``: auto means CUDA only, where it pays."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    return mode == "on" or (mode == "auto" and torch.device(device).type == "cuda")


def compile_in_place(module: torch.nn.Module, mode: str, device, backend: str = "inductor") -> bool:
    """Compile ``module``'s forward in place when ``mode`` asks for it on ``device``; True if it did."""
    if not wanted(mode, device) or getattr(module, "_compiled_call_impl", None) is not None:
        return False
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True  # a graph that fails to compile runs eager, with one warning
    module.compile(backend=backend, dynamic=None)
    log.info("compiled %s for %s (backend %s)", type(module).__name__, device, backend)
    return True
