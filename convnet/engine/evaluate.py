"""Evaluation: run a model over held-out images and score it."""

from __future__ import annotations

import time

import torch
from torch import nn

from convnet.data.transforms import normalize
from convnet.engine.device import fast_inference
from convnet.engine.metrics import (
    confusion_matrix,
    easiest_and_hardest,
    most_confused,
    per_class_accuracy,
    topk_accuracy,
)


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    normalization: tuple[float, float],
    device: torch.device,
    precision: str = "fp32",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Logits (fp32, on the CPU) for float images in [0, 1], in batches, through the shared
    fast-inference path (bf16 autocast + channels-last, or fp32)."""
    was_training = model.training
    model.eval()
    outputs = []
    if batch_size is None:  # 1000 MNIST digits at a time, a few dozen 224×224 photos
        batch_size = max(1, min(1000, 4_000_000 // max(1, images[0].numel() if len(images) else 1)))
    try:
        with fast_inference(model, device, precision) as prepare:
            for start in range(0, len(images), batch_size):
                batch = normalize(images[start : start + batch_size].to(device), *normalization)
                outputs.append(model(prepare(batch)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def score(
    logits: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...], extremes: int = 3
) -> dict:
    """The evaluation keys of DESIGN.md §4: top-1/top-5 error, per-class accuracy, extremes."""
    confusion = confusion_matrix(logits.argmax(dim=1), labels, logits.shape[1])
    top5_correct = round(topk_accuracy(logits, labels, 5) * len(labels))
    return score_confusion(confusion, top5_correct, class_names, extremes)


def score_confusion(
    confusion: torch.Tensor, top5_correct: int, class_names: tuple[str, ...], extremes: int = 3
) -> dict:
    """`score` from sums alone — the confusion matrix and the top-5 hit count — which
    processes can add up (distributed validation) without gathering their logits."""
    num_classes = confusion.shape[0]
    total = int(confusion.sum())
    accuracy = per_class_accuracy(confusion)
    counts = confusion.sum(dim=1)
    per_class = [
        {
            "index": index,
            "name": class_names[index] if index < len(class_names) else str(index),
            "accuracy": None if torch.isnan(accuracy[index]) else round(accuracy[index].item(), 6),
            "count": int(counts[index]),
        }
        for index in range(num_classes)
    ]
    easiest, hardest = easiest_and_hardest(accuracy, extremes)
    return {
        "num_examples": total,
        "top1_error": round(1 - int(confusion.diagonal().sum()) / max(total, 1), 6),
        "top5_error": round(1 - top5_correct / max(total, 1), 6),
        "per_class": per_class,
        "easiest": [per_class[i] for i in easiest],
        "hardest": [per_class[i] for i in hardest],
        "confusions": [
            {"true": per_class[t]["name"], "predicted": per_class[p]["name"], "count": n}
            for t, p, n in most_confused(confusion)
        ],
        "confusion_matrix": confusion.tolist(),
    }


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: tuple[str, ...],
    normalization: tuple[float, float],
    device: torch.device,
    precision: str = "fp32",
) -> tuple[dict, torch.Tensor]:
    """Score `model` on (images, labels); also return the logits for reports."""
    start = time.perf_counter()
    logits = predict_logits(model, images, normalization, device, precision)
    seconds = time.perf_counter() - start
    result = score(logits, labels, class_names)
    result["eval_seconds"] = round(seconds, 4)
    result["eval_images_per_second"] = round(len(labels) / max(seconds, 1e-9), 1)
    return result, logits
