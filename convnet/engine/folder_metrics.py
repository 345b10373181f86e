"""Validation on image folders, split across ranks: each scores its share, sums are all-reduced."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from convnet.engine import distributed
from convnet.engine.device import autocast
from convnet.engine.evaluate import score_confusion
from convnet.engine.metrics import confusion_matrix


@torch.inference_mode()
def evaluate_shard(
    model: nn.Module,
    loader: DataLoader,
    classes: list[str],
    device: torch.device,
    precision: str,
    layout: torch.memory_format = torch.contiguous_format,
) -> dict:
    """Top-1/top-5 error, mean loss and per-class accuracy over every rank's share of the
    validation images (undecodable ones, label -1, are counted apart and not scored)."""
    was_training = model.training
    model.eval()
    count = len(classes)
    confusion = torch.zeros(count, count, dtype=torch.float64)
    top5_correct, loss_sum, undecodable = 0.0, 0.0, 0.0
    try:
        for images, labels, _ in loader:
            valid = labels >= 0
            undecodable += float((~valid).sum())
            if not valid.any():
                continue
            images, labels = images[valid], labels[valid]
            with autocast(device, precision):
                logits = model(images.to(device).contiguous(memory_format=layout))
            logits = logits.float().cpu()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            top = logits.topk(min(5, count), dim=1).indices
            top5_correct += float((top == labels[:, None]).any(dim=1).sum())
            confusion += confusion_matrix(logits.argmax(1), labels, count).double()
    finally:
        model.train(was_training)
    summed = distributed.all_reduce_sum(
        torch.cat([confusion.flatten(), torch.tensor([top5_correct, loss_sum, undecodable])])
    )
    confusion = summed[: count * count].reshape(count, count).round().long()
    top5_correct, loss_sum, undecodable = summed[count * count :].tolist()
    result = score_confusion(confusion, round(top5_correct), tuple(classes))
    result.pop("confusion_matrix")
    result["val_loss"] = round(loss_sum / max(result["num_examples"], 1), 6)
    result["undecodable"] = int(undecodable)
    return result
