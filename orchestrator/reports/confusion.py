"""What a confusion matrix says per class: precision, recall and F1, and the matrix normalised per row.

Pure functions over ``runs.test_confusion`` (rows: true class, columns: predicted class), so the run report
prints numbers a reader can recompute from the one stored matrix. A ratio with nothing to divide by (a class
never predicted, a class absent from the test split) is 0, as torchmetrics and scikit-learn count it, so
the F1 here equals the worker's stored ``test_per_class_f1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassScores:
    support: int  # test images of the class (its row's sum)
    predicted: int  # test images named as the class (its column's sum)
    correct: int
    precision: float
    recall: float
    f1: float


def _square(matrix: list[list[int]]) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.int64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"a confusion matrix is square, got shape {m.shape}")
    if (m < 0).any():
        raise ValueError("a confusion matrix holds counts, got a negative one")
    return m


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=float)
    np.divide(num, den, out=out, where=den > 0)
    return out


def per_class_scores(matrix: list[list[int]]) -> list[ClassScores]:
    """One ClassScores per class, in the matrix's order."""
    m = _square(matrix)
    tp, support, predicted = np.diag(m), m.sum(axis=1), m.sum(axis=0)
    precision, recall = _ratio(tp, predicted), _ratio(tp, support)
    f1 = _ratio(2 * tp, support + predicted)  # = 2PR / (P + R) where both are defined
    return [
        ClassScores(int(s), int(p), int(c), float(pr), float(r), float(f))
        for s, p, c, pr, r, f in zip(support, predicted, tp, precision, recall, f1)
    ]


def row_normalised(matrix: list[list[int]]) -> np.ndarray:
    """Each row divided by its sum: the share of a true class's images given each name (an empty row stays 0)."""
    m = _square(matrix)
    return _ratio(m, m.sum(axis=1, keepdims=True).repeat(m.shape[1], axis=1))
