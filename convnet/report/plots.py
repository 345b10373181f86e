"""Figures a person would rather look at than read: curves, confusion matrices, image grids."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from convnet.files import atomic_write_bytes  # noqa: E402


def save_figure(figure: plt.Figure, path: Path) -> Path:
    """Render to PNG in memory, then write atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def training_curves(history: list[dict], path: Path, split: str = "test") -> Path:
    """Loss and error per epoch, training images against the held-out `split`."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, error_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", label="train loss")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy", title="Training loss")
    error_axis.plot(epochs, [100 * row["train_error"] for row in history], "o-", label="train")
    error_axis.plot(epochs, [100 * row["eval_error"] for row in history], "s-", label=split)
    error_axis.set(xlabel="epoch", ylabel="error (%)", title="Error per epoch")
    error_axis.set_yscale("log")
    error_axis.legend()
    for axis in (loss_axis, error_axis):
        axis.grid(alpha=0.3)
    return save_figure(figure, path)


def confusion_figure(
    confusion: list[list[int]], class_names: list[str], path: Path, split: str = "test"
) -> Path:
    """Counts of true (rows) against predicted (columns), log-coloured so mistakes show."""
    matrix = np.asarray(confusion)
    size = len(class_names)
    figure, axis = plt.subplots(figsize=(0.55 * size + 2.5, 0.55 * size + 2))
    axis.imshow(np.log1p(matrix), cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        if value:
            colour = "white" if row == column else "black"
            axis.text(column, row, str(value), ha="center", va="center", fontsize=7, color=colour)
    axis.set_xticks(range(size), class_names, rotation=45, ha="right")
    axis.set_yticks(range(size), class_names)
    axis.set(xlabel="predicted", ylabel="true", title=f"Confusion matrix ({split} images)")
    return save_figure(figure, path)


def per_class_figure(
    per_class: list[dict], easiest: list[dict], hardest: list[dict], path: Path
) -> Path:
    """Accuracy of each class, the easiest in green and the hardest in red."""
    names = [row["name"] for row in per_class]
    accuracy = [100 * (row["accuracy"] or 0) for row in per_class]
    easy = {row["index"] for row in easiest}
    hard = {row["index"] for row in hardest}
    colours = [
        "#2a9d4b" if i in easy else "#d1495b" if i in hard else "#7f8c9a" for i in range(len(names))
    ]
    figure, axis = plt.subplots(figsize=(max(6, 0.5 * len(names) + 2), 3.6))
    axis.bar(range(len(names)), accuracy, color=colours)
    axis.set_xticks(
        range(len(names)),
        names,
        rotation=45 if len(names) > 12 else 0,
        ha="right" if len(names) > 12 else "center",
    )
    low = min(accuracy) if accuracy else 0
    axis.set_ylim(max(0, low - (100 - low) * 0.5 - 0.5), 100)
    axis.set(ylabel="accuracy (%)", title="Per-class accuracy: easiest (green), hardest (red)")
    axis.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


def image_grid(
    images: torch.Tensor, captions: list[str], path: Path, title: str, columns: int = 8
) -> Path:
    """Small images (C, H, W) in [0, 1] with a caption each (e.g. the most confident
    mistakes): one channel as dark ink on light paper, three as the colour photo."""
    count = len(images)
    rows = max(1, -(-count // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.3, rows * 1.6 + 0.4))
    for index, axis in enumerate(np.atleast_1d(axes).flat):
        axis.axis("off")
        if index < count:
            image = images[index].cpu().float()
            if image.dim() == 3 and image.shape[0] == 3:
                axis.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
            else:
                axis.imshow(image.squeeze().numpy(), cmap="gray_r", vmin=0, vmax=1)
            axis.set_title(captions[index], fontsize=6.5)
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def sorted_accuracy_figure(per_class: list[dict], path: Path) -> Path:
    """Per-class accuracy from the easiest to the hardest class (ImageNet: 1,000 of them)."""
    accuracy = sorted((100 * row["accuracy"] for row in per_class if row["accuracy"] is not None),
                      reverse=True)  # fmt: skip
    figure, axis = plt.subplots(figsize=(8, 3.4))
    axis.plot(np.arange(1, len(accuracy) + 1), accuracy, color="#2c6e9b")
    axis.set(xlabel="class rank (easiest first)", ylabel="accuracy (%)", ylim=(0, 100.5),
             title=f"Per-class accuracy of {len(accuracy)} classes, sorted")  # fmt: skip
    axis.grid(alpha=0.3)
    return save_figure(figure, path)


# Above this many classes a chart of one bar (or one row) per class is unreadable.
MANY_CLASSES = 40


def class_accuracy_figure(result: dict, path: Path) -> Path:
    """One bar per class, or for many classes the sorted accuracy curve."""
    if len(result["per_class"]) <= MANY_CLASSES:
        return per_class_figure(result["per_class"], result["easiest"], result["hardest"], path)
    return sorted_accuracy_figure(result["per_class"], path)
