"""What training is made of between two epochs: the state a checkpoint saves and a resume restores.

Shared by ``worker.ml.train`` (which runs it) and ``worker.ml.checkpoint`` (which writes
and reads it), so imports run one way: train -> checkpoint -> here, and train -> here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch


@dataclass
class Progress:
    """Where training stands after an epoch: what a resumed job restarts from."""

    epoch: int  # last completed epoch (1-based across phases)
    best_epoch: int
    best_value: float  # best validation metric so far
    since_best: int  # epochs of the current phase without improvement
    stopped_phase: int | None = None  # index of the phase early stopping ended, if any

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Trainer:
    """Everything a checkpoint must capture to continue exactly where training was."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau
    generator: torch.Generator
    progress: Progress
