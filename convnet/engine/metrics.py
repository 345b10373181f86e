"""Classification metrics as pure functions on tensors (logits, labels)."""

from __future__ import annotations

import torch


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of examples whose true class is among the k highest scores."""
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    return (top == labels[:, None]).any(dim=1).float().mean().item()


def confusion_matrix(
    predictions: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Counts[true, predicted]."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor) -> torch.Tensor:
    """Recall of each class; NaN for a class with no examples."""
    counts = confusion.sum(dim=1).double()
    return confusion.diagonal().double() / counts.where(counts > 0, torch.nan)


# A class is named easiest or hardest only when its accuracy is further from the median
# class's than this, and than twice its binomial standard error (APART_SIGMAS).
APART_MARGIN = 0.01  # one percentage point: below it a difference is not worth a slide
APART_SIGMAS = 2.0  # about a 95% two-sided interval (normal approximation)
APART_RULE = (
    "a class stands apart when its accuracy differs from the median class's by more than "
    f"{APART_MARGIN * 100:g} percentage point and by more than {APART_SIGMAS:g} binomial standard errors "
    "for its number of images; an easy class must also be above 50%"
)


def apart_threshold(typical: float, count: int) -> float:
    """How far a class of `count` images must be from the `typical` accuracy to stand apart:
    max(APART_MARGIN, APART_SIGMAS × sqrt(p(1 − p) / count)), with p the typical accuracy
    pulled toward ½ by one hit and one miss (Laplace's rule of succession), so a typical
    accuracy of 100% on 8 images does not make a single mistake a "hard" class."""
    shrunk = (typical * count + 1) / (count + 2)
    return max(APART_MARGIN, APART_SIGMAS * (shrunk * (1 - shrunk) / max(count, 1)) ** 0.5)


def easiest_and_hardest(
    accuracy: torch.Tensor, counts: torch.Tensor, count: int = 3
) -> tuple[list[int], list[int]]:
    """Indices of the classes that really stand apart: at most `count` easiest (highest
    accuracy first) and `count` hardest (lowest first), among the classes seen.

    The rule: the typical accuracy is the median over the classes seen (a median, so one
    failed class does not make all the others "easy"). A class stands apart when its
    accuracy differs from the median by more than `apart_threshold(median, its images)`;
    above the median it is easy only if the model also gets most of it right (accuracy
    above 50%), since no class is "easy" at 25%. Equal accuracies name no class. `counts`
    holds each class's number of images."""
    seen = [i for i in range(len(accuracy)) if not torch.isnan(accuracy[i])]
    if not seen:
        return [], []
    values = sorted(accuracy[i].item() for i in seen)
    middle = len(values) // 2
    median = values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

    def distance(index: int) -> float:
        threshold = apart_threshold(median, int(counts[index]))
        return (accuracy[index].item() - median) / threshold

    easy = [i for i in seen if distance(i) > 1 and accuracy[i].item() > 0.5]
    hard = [i for i in seen if distance(i) < -1]
    easy.sort(key=lambda i: (-accuracy[i].item(), i))
    hard.sort(key=lambda i: (accuracy[i].item(), i))
    return easy[:count], hard[:count]


def most_confused(confusion: torch.Tensor, count: int = 5) -> list[tuple[int, int, int]]:
    """The most frequent (true, predicted, times) mistakes, off the diagonal."""
    errors = confusion.clone()
    errors.fill_diagonal_(0)
    values, flat = errors.flatten().sort(descending=True)
    size = confusion.shape[1]
    return [
        (int(index) // size, int(index) % size, int(value))
        for value, index in zip(values[:count], flat[:count], strict=True)
        if value > 0
    ]
