import math

import pytest
import torch

from convnet.engine.metrics import (
    apart_threshold,
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
    counts = torch.tensor([100, 100, 0, 100, 100])
    easiest, hardest = easiest_and_hardest(accuracy, counts, 2)
    assert easiest == [3, 0]
    assert hardest == [1, 4]
    easiest, hardest = easiest_and_hardest(accuracy, counts, 5)  # 4 classes seen: two each
    assert (easiest, hardest) == ([3, 0], [1, 4])


def test_equal_classes_name_none():
    accuracy = torch.full((10,), 0.97, dtype=torch.float64)
    assert easiest_and_hardest(accuracy, torch.full((10,), 1000)) == ([], [])
    perfect = torch.ones(5, dtype=torch.float64)  # "hardest" classes at 100%: none
    assert easiest_and_hardest(perfect, torch.full((5,), 8)) == ([], [])


def test_one_failed_class_is_hardest_and_makes_no_other_easy():
    accuracy = torch.tensor([0.99] * 9 + [0.25], dtype=torch.float64)
    assert easiest_and_hardest(accuracy, torch.full((10,), 100)) == ([], [9])


def test_no_class_is_easy_at_25_percent():
    """An undertrained model: most classes at 0%, one at 25%, one at 90%."""
    accuracy = torch.tensor([0.0] * 8 + [0.25, 0.9], dtype=torch.float64)
    easiest, hardest = easiest_and_hardest(accuracy, torch.full((10,), 200))
    assert easiest == [9] and hardest == []


def test_a_difference_within_the_noise_of_few_images_is_not_apart():
    accuracy = torch.tensor([1.0, 1.0, 1.0, 1.0, 7 / 8], dtype=torch.float64)
    assert easiest_and_hardest(accuracy, torch.full((5,), 8)) == ([], [])  # one slip of 8
    assert easiest_and_hardest(accuracy, torch.full((5,), 800)) == ([], [4])  # 100 of 800
    assert apart_threshold(0.5, 100) == pytest.approx(0.1, abs=0.001)  # 2 × sqrt(.25 / 100)
    assert apart_threshold(1.0, 1_000_000) == 0.01  # the one-point floor


def test_most_confused_orders_mistakes():
    confusion = torch.tensor([[5, 3, 0], [1, 7, 0], [4, 0, 2]])
    assert most_confused(confusion, 2) == [(2, 0, 4), (0, 1, 3)]
    assert most_confused(torch.eye(3, dtype=torch.long), 5) == []
