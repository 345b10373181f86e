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


def easiest_and_hardest(accuracy: torch.Tensor, count: int = 3) -> tuple[list[int], list[int]]:
    """Indices of the classes with the highest and the lowest accuracy (classes seen only);
    with fewer than 2 × count classes each list takes half, so no class is both."""
    seen = [i for i in range(len(accuracy)) if not torch.isnan(accuracy[i])]
    ranked = sorted(seen, key=lambda i: (-accuracy[i].item(), i))
    count = min(count, max(1, len(ranked) // 2))
    return ranked[:count], ranked[::-1][:count]


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
