"""Figures of the lecture's claims: the shifted digit, invariance curves, cost bars.

Every word of a figure is a `lecture.figure.*` message of the catalog (the distortions'
names and the variants' labels are the report's own `lecture.*` messages), drawn in the
language passed as `lang` with a font that has its letters (figure_fonts.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convnet import i18n
from convnet.experiments.cost import CostResult
from convnet.experiments.invariance import InvarianceResult
from convnet.experiments.shift import LECTURE_CHANGED, ShiftResult
from convnet.report.figure_fonts import drawn_in_language
from convnet.report.lecture_words import Words, variant_label
from convnet.report.plots import legend_outside, plain_log_axis, plt, save_figure

# MNIST's split sizes (LeCun, Cortes, Burges: the MNIST database page), for subset titles.
MNIST_TRAIN, MNIST_TEST = 60_000, 10_000
# One colour per family of variant; augmented runs dashed (see invariance_curves).
COLOURS = {"MLP": "#d1495b", "ablation": "#2a9d4b", "average": "#9b5de5", "CNN": "#2d6bb5"}
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


def words(lang: str, key: str, **values: object) -> str:
    """The catalog's `lecture.<key>` in `lang`, integer values written as `lang` writes them
    (pass an index as a str)."""
    written = {
        name: i18n.number(value, lang) if isinstance(value, int) else value
        for name, value in values.items()
    }
    return i18n.text(lang, f"lecture.{key}", **written)


@drawn_in_language
def shift_figure(result: ShiftResult, path: Path, lang: str = "en") -> Path:
    """Original, shifted and their difference (as the lecture draws it), plus the spread
    of the count over the whole test set."""
    original = result.original.numpy()
    shifted = result.shifted.numpy()
    # constrained: the third panel's two-line title and the histogram's axis label need room
    figure, axes = plt.subplots(
        1, 4, figsize=(13, 3.4), width_ratios=[1, 1, 1, 1.5], layout="constrained"
    )
    digit = words(lang, "figure.shift.digit", index=str(result.index), label=result.label)
    for axis, image, title in (
        (axes[0], original, digit),
        (axes[1], shifted, words(lang, "figure.shift.shifted", pixels=result.pixels)),
    ):
        axis.imshow(~image, cmap="gray", vmin=0, vmax=1)  # ink black on white, as on paper
        axis.set_title(title, fontsize=9)
    difference = np.ones((*original.shape, 3))
    difference[original & ~shifted] = (0.82, 0.29, 0.36)  # black → white
    difference[~original & shifted] = (0.18, 0.42, 0.71)  # white → black
    difference[original & shifted] = (0.75, 0.75, 0.75)  # ink in both
    axes[2].imshow(difference)
    axes[2].set_title(
        words(
            lang,
            "figure.shift.difference",
            changed=result.changed,
            black_to_white=result.black_to_white,
            white_to_black=result.white_to_black,
        ),
        fontsize=9,
    )
    for axis in axes[:3]:
        axis.set_xticks([])
        axis.set_yticks([])
    counts = result.all_changed.numpy()
    axes[3].hist(counts, bins=range(int(counts.min()), int(counts.max()) + 2, 4), color="#7f8c9a")
    axes[3].axvline(
        LECTURE_CHANGED,
        color="black",
        linestyle="--",
        label=words(lang, "figure.lecture", value=LECTURE_CHANGED),
    )
    axes[3].axvline(
        result.changed,
        color="#d1495b",
        label=words(
            lang, "figure.shift.this_digit", index=str(result.index), changed=result.changed
        ),
    )
    stats = result.test_set
    axes[3].set(
        xlabel=words(lang, "figure.shift.changed_axis", pixels=result.pixels, inputs=result.inputs),
        ylabel=words(lang, "figure.shift.digits_axis"),
        title=words(
            lang,
            "figure.shift.all",
            count=int(stats["count"]),
            mean=i18n.number(stats["mean"], lang, 1),
            std=i18n.number(stats["std"], lang, 1),
        ),
    )
    axes[3].title.set_fontsize(9)
    legend_outside(axes[3])
    return save_figure(figure, path)


def _style(label: str, kind: str, family: str) -> dict:
    colour = COLOURS.get(kind) or COLOURS["MLP" if family == "MLP" else "CNN"]
    return {
        "color": colour,
        "linestyle": "--" if kind == "augmented" else "-",
        "marker": "o" if kind != "augmented" else None,
        "markersize": 3,
        "label": label,
    }


def _known(lang: str, key: str, otherwise: str) -> str:
    """The catalog's `lecture.<key>`, or `otherwise` where the catalog has no such key."""
    return words(lang, key) if f"lecture.{key}" in i18n.messages(lang) else otherwise


def _invariance_title(result: InvarianceResult, lang: str) -> str:
    """What was measured on how many digits, and on how many the networks were trained."""
    used = result.num_test_images
    test = (
        words(lang, "figure.invariance.test_subset", used=used, total=MNIST_TEST)
        if result.settings.get("test_subset") and used < MNIST_TEST
        else words(lang, "figure.invariance.test_all", count=used)
    )
    trained = result.settings.get("train_subset")
    if trained and trained < MNIST_TRAIN:
        train = words(lang, "figure.invariance.train_subset", used=trained, total=MNIST_TRAIN)
        return words(lang, "figure.invariance.title_trained", test=test, train=train)
    return words(lang, "figure.invariance.title", test=test)


@drawn_in_language
def invariance_curves(result: InvarianceResult, path: Path, lang: str = "en") -> Path:
    """Test accuracy against each distortion's strength, one line per trained variant (its
    first seed: the other seeds' spread is claim 3's table)."""
    from convnet.models import get_model_spec

    count = len(result.curves)
    columns = min(3, count)
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.4 * rows), squeeze=False)
    for axis, curve in zip(axes.flat, result.curves, strict=False):
        for variant in result.first_seed():
            family = get_model_spec(variant.model).family
            axis.plot(
                curve.levels,
                [100 * a for a in curve.accuracy[variant.label]],
                **_style(variant_label(variant, Words(lang)), variant.kind, family),
            )
        name = curve.distortion
        axis.set(
            xlabel=_known(lang, f"figure.invariance.axis.{name}", curve.label),
            ylabel=words(lang, "figure.invariance.accuracy"),
            ylim=(0, 100),
        )
        axis.set_title(_known(lang, f"distortion.{name}", name.replace("_", " ")), fontsize=10)
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
    figure.suptitle(_invariance_title(result, lang), fontsize=11)
    figure.tight_layout(rect=(0, 0.05, 1, 0.97))
    return save_figure(figure, path)


@drawn_in_language
def cost_bars(result: CostResult, path: Path, lang: str = "en") -> Path:
    """Time per image, each layer type's share of it, and memory, per model. Times and
    memory span orders of magnitude, so they are dots on log axes (a bar's length from an
    arbitrary log floor would mean nothing); the shares are stacked bars from 0%."""
    figure, (time_axis, share_axis, memory_axis) = plt.subplots(
        1, 3, figsize=(15, 3.8), width_ratios=[1.2, 1.4, 1]
    )
    settings = [(kind, batch) for kind in ("inference", "training") for batch in ("1", "256")]
    _time_panel(time_axis, result, settings, lang)
    _share_panel(share_axis, result, settings, lang)
    _memory_panel(memory_axis, result, lang)
    conditions = result.conditions
    clock = "cpu" if conditions is not None and conditions.cpu_share is not None else "wall"
    load = conditions.load if conditions is not None else result.load_average[0]
    figure.suptitle(
        words(
            lang,
            "figure.cost.machine",
            device=result.device,
            precision=result.precision,
            threads=result.threads,
            clock=words(lang, f"cost.clock.{clock}"),
            load=i18n.number(load or 0.0, lang, 1),
            cores=conditions.cores if conditions is not None else "?",
        ),
        fontsize=9,
    )
    figure.tight_layout()
    return save_figure(figure, path)


def _time_panel(time_axis: plt.Axes, result: CostResult, settings: list, lang: str) -> None:
    """Microseconds per image of each model in each setting, as dots on a log axis."""
    width = 0.6 / max(1, len(result.models) - 1)
    times = []
    for index, model in enumerate(result.models):
        seconds = [model.seconds_per_image[kind][batch] * 1e6 for kind, batch in settings]
        times += seconds
        time_axis.plot(
            np.arange(len(settings)) - 0.3 + index * width,
            seconds,
            "o",
            markersize=7,
            label=model.model,
            color=MODEL_COLOURS[index % len(MODEL_COLOURS)],
        )
    setting_labels = [
        words(lang, "figure.cost.setting", kind=words(lang, f"cost.{kind}"), batch=batch)
        for kind, batch in settings
    ]
    time_axis.set_xticks(np.arange(len(settings)), setting_labels, fontsize=8)
    time_axis.set_xlim(-0.6, len(settings) - 0.4)
    plain_log_axis(time_axis, min(times) / 1.6, max(times) * 1.6)
    time_axis.set(
        ylabel=words(lang, "figure.cost.time_axis"), title=words(lang, "figure.cost.time_title")
    )
    time_axis.grid(axis="y", alpha=0.3)
    legend_outside(time_axis)


def _share_panel(share_axis: plt.Axes, result: CostResult, settings: list, lang: str) -> None:
    """Each layer type's share of the time, stacked per model and setting, with the
    lecture's 2/3."""
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
                range(len(bars)),
                values,
                bottom=bottoms,
                color=LAYER_COLOURS[kind],
                label=words(lang, f"figure.layer.{kind.replace(' ', '_')}"),
            )
            bottoms += values
    share_axis.axhline(
        100 * 2 / 3,
        color="black",
        linestyle="--",
        linewidth=1,
        label=words(lang, "figure.lecture", value="2/3"),
    )
    bar_labels = [
        words(
            lang,
            "figure.cost.bar",
            model=name,
            batch=batch,
            kind=words(lang, f"figure.cost.{kind}_short"),
        )
        for name, kind, batch in bars
    ]
    share_axis.set_xticks(range(len(bars)), bar_labels, fontsize=6, rotation=90)
    share_axis.set(
        ylabel=words(lang, "figure.cost.share_axis"),
        ylim=(0, 100),
        title=words(lang, "figure.cost.share_title"),
    )
    share_axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1, 1))


def _memory_panel(memory_axis: plt.Axes, result: CostResult, lang: str) -> None:
    """Weights and activations per image of each model, in KiB on a log axis."""
    names = [model.model for model in result.models]
    positions = np.arange(len(names))
    weights = [m.weight_bytes / 1024 for m in result.models]
    activations = [m.activation_bytes / 1024 for m in result.models]
    memory_axis.plot(
        positions,
        weights,
        "s",
        markersize=8,
        color="#2d6bb5",
        label=words(lang, "figure.cost.weights"),
    )
    memory_axis.plot(
        positions,
        activations,
        "^",
        markersize=8,
        color="#f2a541",
        label=words(lang, "figure.cost.activations"),
    )
    memory_axis.set_xticks(positions, names, fontsize=8)
    memory_axis.set_xlim(-0.6, len(names) - 0.4)
    plain_log_axis(memory_axis, min(weights + activations) / 1.6, max(weights + activations) * 1.6)
    memory_axis.set(
        ylabel=words(lang, "figure.cost.memory_axis"), title=words(lang, "figure.cost.memory_title")
    )
    memory_axis.grid(axis="y", alpha=0.3)
    legend_outside(memory_axis)


@drawn_in_language
def feature_map_figure(measured, path: Path, feature_index: int = 0, lang: str = "en") -> Path:
    """A digit and its shifted copy, and one C1 feature map of each: the map moves along."""
    layer, index = measured.layer, str(feature_index)
    panels = (  # image, title, colour map: digits in ink on paper, maps in colour
        (measured.digit, words(lang, "figure.feature.digit"), "gray_r"),
        (
            measured.shifted_digit,
            words(lang, "figure.shift.shifted", pixels=measured.pixels),
            "gray_r",
        ),
        (
            measured.feature[feature_index],
            words(lang, "figure.feature.map", layer=layer, index=index),
            "viridis",
        ),
        (
            measured.shifted_feature[feature_index],
            words(lang, "figure.feature.shifted_map", layer=layer, index=index),
            "viridis",
        ),
    )
    figure, axes = plt.subplots(1, 4, figsize=(11, 3))
    for axis, (image, title, colours) in zip(axes, panels, strict=True):
        axis.imshow(image.numpy(), cmap=colours)
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    difference = f"{measured.max_difference:.1e}".replace(".", i18n.text(lang, "number.decimal"))
    figure.suptitle(
        words(
            lang,
            "figure.feature.difference",
            difference=difference,
            response=i18n.number(measured.max_response, lang, 2),
        ),
        fontsize=9,
    )
    return save_figure(figure, path)
