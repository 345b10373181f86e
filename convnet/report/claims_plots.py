"""Figures of the lecture's claims: the shifted digit, invariance curves, cost bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convnet.experiments.cost import CostResult
from convnet.experiments.invariance import InvarianceResult
from convnet.experiments.shift import LECTURE_CHANGED, ShiftResult
from convnet.report.plots import legend_outside, plain_log_axis, plt, save_figure, subset_note

# MNIST's split sizes (LeCun, Cortes, Burges: the MNIST database page), for subset titles.
MNIST_TRAIN, MNIST_TEST = 60_000, 10_000
# One colour per family of variant; augmented runs dashed (see invariance_curves).
COLOURS = {"MLP": "#d1495b", "ablation": "#2a9d4b", "CNN": "#2d6bb5"}
MODEL_COLOURS = ("#2d6bb5", "#d1495b", "#f2a541", "#2a9d4b")
LAYER_COLOURS = {
    "convolution": "#2d6bb5",
    "pooling": "#7fb3e6",
    "fully connected": "#d1495b",
    "activation": "#f2a541",
    "loss": "#9b8ec4",
    "optimizer": "#7f8c9a",
    "other": "#cccccc",
}


def shift_figure(result: ShiftResult, path: Path) -> Path:
    """Original, shifted and their difference (as the lecture draws it), plus the spread
    of the count over the whole test set."""
    original = result.original.numpy()
    shifted = result.shifted.numpy()
    figure, axes = plt.subplots(1, 4, figsize=(13, 3.4), width_ratios=[1, 1, 1, 1.5])
    for axis, image, title in (
        (axes[0], original, f"test digit #{result.index} ({result.label}), binarized"),
        (axes[1], shifted, f"shifted {result.pixels} px left"),
    ):
        axis.imshow(~image, cmap="gray", vmin=0, vmax=1)  # ink black on white, as on paper
        axis.set_title(title, fontsize=9)
    difference = np.ones((*original.shape, 3))
    difference[original & ~shifted] = (0.82, 0.29, 0.36)  # black → white
    difference[~original & shifted] = (0.18, 0.42, 0.71)  # white → black
    difference[original & shifted] = (0.75, 0.75, 0.75)  # ink in both
    axes[2].imshow(difference)
    axes[2].set_title(
        f"{result.changed} inputs change: {result.black_to_white} black→white (red),\n"
        f"{result.white_to_black} white→black (blue)",
        fontsize=9,
    )
    for axis in axes[:3]:
        axis.set_xticks([])
        axis.set_yticks([])
    counts = result.all_changed.numpy()
    axes[3].hist(counts, bins=range(int(counts.min()), int(counts.max()) + 2, 4), color="#7f8c9a")
    axes[3].axvline(
        LECTURE_CHANGED, color="black", linestyle="--", label=f"lecture: {LECTURE_CHANGED}"
    )
    axes[3].axvline(
        result.changed, color="#d1495b", label=f"digit #{result.index}: {result.changed}"
    )
    stats = result.test_set
    axes[3].set(
        xlabel=f"inputs changed by a {result.pixels}-px shift (of {result.inputs})",
        ylabel="test digits",
        title=f"all {stats['count']:,} test digits: mean {stats['mean']:.1f} ± {stats['std']:.1f}",
    )
    axes[3].title.set_fontsize(9)
    legend_outside(axes[3])
    return save_figure(figure, path)


def _style(label: str, kind: str, family: str) -> dict:
    colour = (
        COLOURS["ablation"] if kind == "ablation" else COLOURS["MLP" if family == "MLP" else "CNN"]
    )
    return {
        "color": colour,
        "linestyle": "--" if kind == "augmented" else "-",
        "marker": "o" if kind != "augmented" else None,
        "markersize": 3,
        "label": label,
    }


def invariance_curves(result: InvarianceResult, path: Path) -> Path:
    """Test accuracy against each distortion's strength, one line per trained variant."""
    from convnet.models import get_model_spec

    count = len(result.curves)
    columns = min(3, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    for axis, curve in zip(axes.flat, result.curves, strict=False):
        for variant in result.variants:
            family = get_model_spec(variant.model).family
            axis.plot(
                curve.levels,
                [100 * a for a in curve.accuracy[variant.label]],
                **_style(variant.label, variant.kind, family),
            )
        axis.set(xlabel=curve.label, ylabel="test accuracy (%)", ylim=(0, 100))
        axis.set_title(curve.distortion.replace("_", " "), fontsize=10)
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[count:]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(5, len(labels)),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02),
    )
    title = f"Accuracy on {result.num_test_images:,} distorted MNIST test digits"
    if result.settings.get("test_subset"):
        test = subset_note(result.num_test_images, MNIST_TEST, "distorted MNIST test digits")
        title = f"Accuracy on {test}"
    if result.settings.get("train_subset"):
        trained = subset_note(result.settings["train_subset"], MNIST_TRAIN, "training digits")
        title += f"; each network trained on {trained}"
    figure.suptitle(title, fontsize=11)
    figure.tight_layout(rect=(0, 0.05, 1, 0.97))
    return save_figure(figure, path)


def cost_bars(result: CostResult, path: Path) -> Path:
    """Time per image, each layer type's share of it, and memory, per model. Times and
    memory span orders of magnitude, so they are dots on log axes (a bar's length from an
    arbitrary log floor would mean nothing); the shares are stacked bars from 0%."""
    figure, (time_axis, share_axis, memory_axis) = plt.subplots(
        1, 3, figsize=(15, 3.8), width_ratios=[1.2, 1.4, 1]
    )
    settings = [(kind, batch) for kind in ("inference", "training") for batch in ("1", "256")]
    width = 0.6 / max(1, len(result.models) - 1)
    times = []
    for index, model in enumerate(result.models):
        seconds = [model.seconds_per_image[kind][batch] * 1e6 for kind, batch in settings]
        times += seconds
        time_axis.plot(np.arange(len(settings)) - 0.3 + index * width, seconds, "o",
                       markersize=7, label=model.model,
                       color=MODEL_COLOURS[index % len(MODEL_COLOURS)])  # fmt: skip
    time_axis.set_xticks(
        np.arange(len(settings)), [f"{kind}\nbatch {batch}" for kind, batch in settings], fontsize=8
    )
    time_axis.set_xlim(-0.6, len(settings) - 0.4)
    plain_log_axis(time_axis, min(times) / 1.6, max(times) * 1.6)
    time_axis.set(ylabel="µs per image (median, log scale)", title="Time per image")
    time_axis.grid(axis="y", alpha=0.3)
    legend_outside(time_axis)

    bars = [(model.model, kind, batch) for model in result.models for kind, batch in settings]
    kinds = list(LAYER_COLOURS)
    bottoms = np.zeros(len(bars))
    for kind in kinds:
        values = np.array(
            [
                100
                * next(m for m in result.models if m.model == name)
                .time_shares[setting][batch]
                .get(kind, 0.0)
                for name, setting, batch in bars
            ]
        )
        if values.any():
            share_axis.bar(
                range(len(bars)), values, bottom=bottoms, color=LAYER_COLOURS[kind], label=kind
            )
            bottoms += values
    share_axis.axhline(
        100 * 2 / 3, color="black", linestyle="--", linewidth=1, label="lecture: 2/3"
    )
    share_axis.set_xticks(
        range(len(bars)), [f"{name}\n{s[:5]}. b{b}" for name, s, b in bars], fontsize=6, rotation=90
    )
    share_axis.set(ylabel="share of profiled time (%)", ylim=(0, 100), title="Where the time goes")
    share_axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))

    names = [model.model for model in result.models]
    positions = np.arange(len(names))
    weights = [m.weight_bytes / 1024 for m in result.models]
    activations = [m.activation_bytes / 1024 for m in result.models]
    memory_axis.plot(positions, weights, "s", markersize=8, color="#2d6bb5", label="weights")
    memory_axis.plot(positions, activations, "^", markersize=8, color="#f2a541",
                     label="activations per image")  # fmt: skip
    memory_axis.set_xticks(positions, names, fontsize=8)
    memory_axis.set_xlim(-0.6, len(names) - 0.4)
    plain_log_axis(memory_axis, min(weights + activations) / 1.6, max(weights + activations) * 1.6)
    memory_axis.set(ylabel="KiB (log scale)", title="Memory")
    memory_axis.grid(axis="y", alpha=0.3)
    legend_outside(memory_axis)
    figure.suptitle(
        f"{result.device}, {result.precision}, {result.threads} thread(s), "
        f"load average {result.load_average[0]:.1f}",
        fontsize=9,
    )
    figure.tight_layout()
    return save_figure(figure, path)


def feature_map_figure(measured, path: Path, feature_index: int = 0) -> Path:
    """A digit and its shifted copy, and one C1 feature map of each: the map moves along."""
    panels = (
        (measured.digit, "digit"),
        (measured.shifted_digit, f"shifted {measured.pixels} px left"),
        (measured.feature[feature_index], f"{measured.layer} map {feature_index} of the digit"),
        (
            measured.shifted_feature[feature_index],
            f"{measured.layer} map {feature_index} of the shifted digit",
        ),
    )
    figure, axes = plt.subplots(1, 4, figsize=(11, 3))
    for axis, (image, title) in zip(axes, panels, strict=True):
        axis.imshow(
            image.numpy(), cmap="gray_r" if image.ndim == 2 and "map" not in title else "viridis"
        )
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(
        f"Largest difference between the shifted map and the map of the shifted digit: "
        f"{measured.max_difference:.1e} (largest response {measured.max_response:.2f})",
        fontsize=9,
    )
    return save_figure(figure, path)
