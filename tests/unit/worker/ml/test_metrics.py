import pytest
import torch

from worker.ml.metrics import confusion, per_class_f1, score


def test_scores_against_hand_computed_values():
    # 4 samples, 3 classes; predictions (argmax): 0, 1, 1, 2; truth: 0, 1, 2, 2
    logits = torch.tensor([[3.0, 2, 1], [1, 3, 2], [1, 3, 2], [2, 1, 3]])
    target = torch.tensor([0, 1, 2, 2])
    s = score(logits, target)
    assert s.top1 == 0.75
    # sample 3's true class 2 is second best -> top-2 hits all four
    assert s.top2 == 1.0
    # F1 per class: c0 = 1, c1 = 2/3 (p=1/2, r=1), c2 = 2/3 (p=1, r=1/2)
    assert per_class_f1(logits, target) == pytest.approx([1.0, 2 / 3, 2 / 3])
    assert s.macro_f1 == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert confusion(logits, target) == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
