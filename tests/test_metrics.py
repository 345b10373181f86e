import math

import torch

from convnet.engine.metrics import (
    confusion_matrix,
    easiest_and_hardest,
    most_confused,
    per_class_accuracy,
    topk_accuracy,
)

LOGITS = torch.tensor(
    [
        [0.9, 0.05, 0.03, 0.02],  # true 0, top-1 right
        [0.1, 0.2, 0.6, 0.1],  # true 1, predicted 2; 1 is second
        [0.5, 0.1, 0.3, 0.1],  # true 2, predicted 0; 2 is second
        [0.1, 0.2, 0.3, 0.4],  # true 0, predicted 3; 0 is last
    ]
)
LABELS = torch.tensor([0, 1, 2, 0])


def test_topk_accuracy_by_hand():
    assert topk_accuracy(LOGITS, LABELS, 1) == 0.25
    assert topk_accuracy(LOGITS, LABELS, 2) == 0.75
    assert topk_accuracy(LOGITS, LABELS, 4) == 1.0
    assert topk_accuracy(LOGITS, LABELS, 10) == 1.0  # k larger than the classes


def test_confusion_and_per_class_by_hand():
    confusion = confusion_matrix(LOGITS.argmax(1), LABELS, 4)
    assert confusion.tolist() == [[1, 0, 0, 1], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    accuracy = per_class_accuracy(confusion)
    assert accuracy[:3].tolist() == [0.5, 0.0, 0.0]
    assert math.isnan(accuracy[3])  # class 3 never occurs


def test_easiest_and_hardest_skip_unseen_classes():
    accuracy = torch.tensor([0.9, 0.5, float("nan"), 1.0, 0.7], dtype=torch.float64)
    easiest, hardest = easiest_and_hardest(accuracy, 2)
    assert easiest == [3, 0]
    assert hardest == [1, 4]
    easiest, hardest = easiest_and_hardest(accuracy, 5)  # 4 classes seen: two each
    assert (easiest, hardest) == ([3, 0], [1, 4])


def test_most_confused_orders_mistakes():
    confusion = torch.tensor([[5, 3, 0], [1, 7, 0], [4, 0, 2]])
    assert most_confused(confusion, 2) == [(2, 0, 4), (0, 1, 3)]
    assert most_confused(torch.eye(3, dtype=torch.long), 5) == []
