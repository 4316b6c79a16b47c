"""Classification metrics, computed with torchmetrics on whatever device the logits live."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
)


@dataclass(frozen=True)
class Scores:
    top1: float
    top2: float
    macro_f1: float


def score(logits: torch.Tensor, target: torch.Tensor) -> Scores:
    """top-1, top-2 accuracy (micro, i.e. fraction of images) and macro-F1."""
    num_classes = logits.shape[1]
    logits, target = logits.float(), target.long()
    top2 = (
        multiclass_accuracy(logits, target, num_classes, top_k=2, average="micro").item()
        if num_classes > 2
        else 1.0  # with two classes the true label is always among the top two
    )
    return Scores(
        top1=multiclass_accuracy(logits, target, num_classes, average="micro").item(),
        top2=top2,
        macro_f1=multiclass_f1_score(logits, target, num_classes, average="macro").item(),
    )


def per_class_f1(logits: torch.Tensor, target: torch.Tensor) -> list[float]:
    return multiclass_f1_score(logits.float(), target.long(), logits.shape[1], average="none").tolist()


def confusion(logits: torch.Tensor, target: torch.Tensor) -> list[list[int]]:
    """Rows are true classes, columns predicted classes."""
    return multiclass_confusion_matrix(logits.float(), target.long(), logits.shape[1]).tolist()
