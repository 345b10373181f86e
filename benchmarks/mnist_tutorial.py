"""The peer of benchmarks/train_speed.py: the common PyTorch tutorial pipeline for LeNet-5 on
MNIST, written out — torchvision's MNIST data set with per-image transforms, a DataLoader at
batch 64, SGD (lr 0.01, momentum 0.9), cross-entropy — trained epoch by epoch until the test
accuracy reaches ACCURACY."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

from convnet.data.datasets import default_data_dir
from convnet.models import get_model

ACCURACY = 0.99  # the test accuracy the tutorial and convnet race to


def convnet_figures(result: dict, history: list[dict]) -> dict:
    """What the race reads from a convnet run: its `--json` result (or `fit`'s) and its
    history (`Run.history`, metrics.csv by epoch): images/s, training seconds, final test
    error, and the training seconds up to the end of the first epoch at ACCURACY (None if
    none got there)."""
    elapsed, time_to_99 = 0.0, None
    for row in history:
        elapsed += row["epoch_seconds"]
        if time_to_99 is None and row["eval_error"] <= 1 - ACCURACY:
            time_to_99 = elapsed
    return {
        "images_per_second": result["images_per_second"],
        "train_seconds": result["train_seconds"],
        "test_error": result["top1_error"],
        "time_to_99": time_to_99,
    }


def tutorial_data(root: Path) -> tuple[MNIST, MNIST]:
    """torchvision's MNIST over our verified files, with the tutorial's per-image transforms."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for path in (default_data_dir() / "mnist").iterdir():
        if not (raw / path.name).exists():
            (raw / path.name).symlink_to(path)
    transform = transforms.Compose(
        [transforms.Pad(2), transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
    )
    return (
        MNIST(str(root), train=True, transform=transform),
        MNIST(str(root), train=False, transform=transform),
    )


def tutorial_evaluate(model: torch.nn.Module, test: MNIST) -> tuple[float, float]:
    """The tutorial's evaluation loop: DataLoader at batch 1000; (seconds, test error)."""
    model.eval()
    wrong, started = 0, time.perf_counter()
    with torch.no_grad():
        for images, labels in DataLoader(test, batch_size=1000):
            wrong += int((model(images).argmax(1) != labels).sum())
    return time.perf_counter() - started, wrong / len(test)


def tutorial_run(seed: int, train: MNIST, test: MNIST, max_epochs: int) -> dict:
    """The tutorial's training loop (batch 64, SGD lr 0.01 momentum 0.9, cross-entropy), one
    epoch at a time until the test accuracy reaches 99.0% or `max_epochs` have run. Only the
    training is timed; each epoch's scoring runs outside the clock."""
    torch.manual_seed(seed)
    model = get_model("lenet5")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    seen, seconds, time_to_99, errors, eval_seconds = 0, 0.0, None, [], []
    for _ in range(max_epochs):
        started = time.perf_counter()
        model.train()
        for images, labels in DataLoader(train, batch_size=64, shuffle=True):
            optimizer.zero_grad()
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            seen += len(labels)
        seconds += time.perf_counter() - started
        scoring_seconds, error = tutorial_evaluate(model, test)
        errors.append(error)
        eval_seconds.append(scoring_seconds)
        if error <= 1 - ACCURACY:
            time_to_99 = seconds
            break
    return {
        "images_per_second": seen / seconds,
        "train_seconds": seconds,
        "test_error": errors[-1],
        "epoch_errors": errors,
        "epochs": len(errors),
        "time_to_99": time_to_99,
        "eval_seconds": statistics.median(eval_seconds),
    }
