"""Figures a person would rather look at than read: curves, confusion matrices, image grids.

Their words are the catalog's `report.*` messages in the language passed as `lang` (the
figures that save themselves take care of the font through `drawn_in_language`)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib import colors, ticker  # noqa: E402

from convnet import i18n  # noqa: E402
from convnet.files import atomic_write_bytes  # noqa: E402
from convnet.report.figure_fonts import drawn_in_language  # noqa: E402


def report_words(lang: str, key: str, **values: object) -> str:
    """The catalog's `report.<key>` in `lang`, integers written as `lang` writes them."""
    written = {
        name: i18n.number(value, lang) if isinstance(value, int) else value
        for name, value in values.items()
    }
    return i18n.text(lang, f"report.{key}", **written)


def split_name(split: str, lang: str = "en") -> str:
    """A split's name in `lang` ("test", "val" → "검증"); an unknown split as it is."""
    key = f"report.split.{split}"
    return i18n.text(lang, key) if key in i18n.messages(lang) else split


def save_figure(figure: plt.Figure, path: Path) -> Path:
    """Render to PNG in memory, then write atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def plain_number(value: float) -> str:
    """0.05, 0.5, 2, 20, 1,000: as many decimals as the value needs, never 10^x."""
    if value <= 0:
        return "0"
    decimals = max(0, -int(np.floor(np.log10(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def nice_ticks(low: float, high: float) -> list[float]:
    """Tick values of a log axis between `low` and `high`: 1-2-5 in each decade, or every
    integer multiple where that leaves fewer than three."""
    decades = range(int(np.floor(np.log10(low))), int(np.ceil(np.log10(high))) + 1)
    for multiples in ((1, 2, 5), (1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0**d for d in decades for m in multiples if low <= m * 10.0**d <= high]
        if len(ticks) >= 3:
            break
    return ticks


def plain_log_axis(axis: plt.Axes, low: float, high: float, unit: str = "") -> None:
    """A log y axis from `low` to `high` labelled in plain numbers (0.5%, 2%, 100)."""
    axis.set_yscale("log")
    axis.set_ylim(low, high)
    axis.yaxis.set_major_locator(ticker.FixedLocator(nice_ticks(low, high)))
    axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: plain_number(v) + unit))
    axis.yaxis.set_minor_formatter(ticker.NullFormatter())


def percent_log_axis(
    axis: plt.Axes, series: list[list[float]], label: str = "error (%)", lang: str = "en"
) -> list[list[float]]:
    """Set a log axis for percentages, labelled 0.5%, 1%, 2%, …, and return the series to
    draw on it. A log axis has no 0: values at 0 are drawn at a floor (half the smallest
    positive value, rounded down to 1-2-5) and the axis label says so; when every value is
    0 the axis is linear from 0."""
    positive = [value for values in series for value in values if value > 0]
    if not positive:
        axis.set_ylim(0, 1)
        axis.set_ylabel(label)
        axis.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: plain_number(v) + "%"))
        return series
    low, high = min(positive), max(positive)
    if len(positive) < sum(len(values) for values in series):
        exponent = int(np.floor(np.log10(low / 2)))
        floor = max(m * 10.0**exponent for m in (1, 2, 5) if m * 10.0**exponent <= low / 2)
        series = [[max(value, floor) for value in values] for values in series]
        low = floor
        label += report_words(lang, "figure.zero_at", floor=plain_number(floor))
    axis.set_ylabel(report_words(lang, "figure.log_scale", label=label))
    plain_log_axis(axis, low / 1.25, high * 1.25, "%")
    return series


def legend_outside(axis: plt.Axes, **options) -> None:
    """The legend to the right of the axes, where it cannot cover a curve or a bar."""
    axis.legend(
        loc="upper left",
        bbox_to_anchor=(1.02, 1),
        borderaxespad=0,
        frameon=False,
        fontsize=options.pop("fontsize", 8),
        **options,
    )


def subset_note(used: int, total: int | None, what: str, lang: str = "en") -> str:
    """ "2,000 of 10,000 test images", or "" when all were used."""
    if total is not None and used >= total:
        return ""
    if total:
        return report_words(lang, "subset.of", used=used, total=total, what=what)
    return report_words(lang, "subset.part", used=used, what=what)


# A confusion matrix of more classes than this cannot be read; beyond it the figure keeps the
# classes most involved in mistakes.
CONFUSION_CLASSES = 20


def confused_classes(matrix: np.ndarray, limit: int = CONFUSION_CLASSES) -> list[int]:
    """Every class, or beyond `limit` the `limit` classes with the most mistakes (as the true
    class or as the prediction), in class order."""
    if len(matrix) <= limit:
        return list(range(len(matrix)))
    errors = matrix.copy()
    np.fill_diagonal(errors, 0)
    involved = errors.sum(axis=0) + errors.sum(axis=1)
    return sorted(np.argsort(-involved, kind="stable")[:limit].tolist())


def confusion_matrix_figure(
    confusion: list[list[int]],
    class_names: list[str],
    split: str = "test",
    note: str = "",
    lang: str = "en",
) -> plt.Figure:
    """Each true class's images (rows) by predicted class (columns): the share of the row
    as colour (square-root scale, so mistakes of 1% show) and as text, with the count."""
    matrix = np.asarray(confusion)
    shares = 100 * matrix / np.maximum(matrix.sum(axis=1), 1)[:, None]
    shown = confused_classes(matrix)
    counts, shares = matrix[np.ix_(shown, shown)], shares[np.ix_(shown, shown)]
    size = len(shown)
    figure, axis = plt.subplots(figsize=(0.62 * size + 3, 0.62 * size + 2.2))
    image = axis.imshow(shares, cmap="Blues", norm=colors.PowerNorm(0.5, vmin=0, vmax=100))
    font = 7.5 if size <= 12 else 6.5
    for (row, column), count in np.ndenumerate(counts):
        if count:
            share = shares[row, column]
            # no "100%" in a row with mistakes, nor "0%" where some went: >99% and <1%
            text = "<1%" if share < 0.5 else ">99%" if 99.5 <= share < 100 else f"{share:.0f}%"
            axis.text(
                column,
                row,
                f"{text}\n{count:,}",
                ha="center",
                va="center",
                fontsize=font,
                color="white" if share > 50 else "black",
                linespacing=0.9,
            )
    names = [class_names[i] for i in shown]
    axis.set_xticks(range(size), names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(size), names, fontsize=8)
    title = report_words(lang, "figure.confusion_title", split=split_name(split, lang))
    if size < len(matrix):
        title += "\n" + report_words(lang, "figure.confusion_some", size=size, total=len(matrix))
    axis.set(
        xlabel=report_words(lang, "figure.predicted"),
        ylabel=report_words(lang, "figure.true"),
        title=title + (f"\n{note}" if note else ""),
    )
    figure.colorbar(image, ax=axis, shrink=0.8, label=report_words(lang, "figure.confusion_bar"))
    return figure


@drawn_in_language
def confusion_figure(
    confusion: list[list[int]],
    class_names: list[str],
    path: Path,
    split: str = "test",
    note: str = "",
    lang: str = "en",
) -> Path:
    """`confusion_matrix_figure` saved as PNG."""
    figure = confusion_matrix_figure(confusion, class_names, split, note, lang)
    return save_figure(figure, path)


EASY, HARD, OTHER = "#2a9d4b", "#d1495b", "#7f8c9a"


def per_class_accuracy_figure(
    per_class: list[dict],
    easiest: list[dict],
    hardest: list[dict],
    note: str = "",
    lang: str = "en",
) -> plt.Figure:
    """One bar per class from 0%, its value printed above it; a class at 0% still gets a
    visible stroke on the axis and its "0" label, and a class without images says so. The
    easiest (green) and hardest (red) are those that stand apart (engine.metrics)."""
    names = [row["name"] for row in per_class]
    easy = {row["index"] for row in easiest}
    hard = {row["index"] for row in hardest}
    colours = [EASY if i in easy else HARD if i in hard else OTHER for i in range(len(names))]
    accuracy = [None if row["accuracy"] is None else 100 * row["accuracy"] for row in per_class]
    many = len(names) > 12
    figure, axis = plt.subplots(figsize=(max(6, 0.5 * len(names) + 2), 3.8))
    axis.bar(range(len(names)), [value or 0 for value in accuracy], color=colours)
    for index, value in enumerate(accuracy):
        if value is not None and value < 0.5:  # a bar of no height: a stroke on the axis
            axis.plot(
                [index - 0.4, index + 0.4],
                [0, 0],
                color=colours[index],
                linewidth=4,
                solid_capstyle="butt",
                clip_on=False,
                zorder=3,
            )
        text = (
            report_words(lang, "figure.no_images")
            if value is None
            else i18n.number(value, lang, 1)
            if value < 100
            else "100"
        )
        axis.annotate(
            text,
            (index, value or 0),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=6 if many else 7,
            rotation=90 if many else 0,
        )
    axis.set_xticks(
        range(len(names)), names, rotation=45 if many else 0, ha="right" if many else "center"
    )
    named = report_words(lang, "figure.apart" if easy or hard else "figure.none_apart")
    title = report_words(lang, "figure.per_class_title", named=named) + (
        f"\n{note}" if note else ""
    )
    axis.set(
        ylabel=report_words(lang, "figure.accuracy_axis"),
        ylim=(0, 112 if many else 108),
        title=title,
    )
    axis.set_yticks(range(0, 101, 20))
    axis.grid(axis="y", alpha=0.3)
    axis.spines[["top", "right"]].set_visible(False)
    return figure


def per_class_figure(
    per_class: list[dict],
    easiest: list[dict],
    hardest: list[dict],
    path: Path,
    note: str = "",
    lang: str = "en",
) -> Path:
    """`per_class_accuracy_figure` saved as PNG."""
    figure = per_class_accuracy_figure(per_class, easiest, hardest, note, lang)
    return save_figure(figure, path)


@drawn_in_language
def image_grid(
    images: torch.Tensor,
    captions: list[str],
    path: Path,
    title: str,
    columns: int = 8,
    lang: str = "en",
) -> Path:
    """Small images (C, H, W) in [0, 1] with a caption each (e.g. the most confident
    mistakes): one channel as dark ink on light paper, three as the colour photo. All are
    drawn in one pair of axes, each image at its place: a grid of axes cost ~40 ms per
    image to lay out and draw, the most of a run report's time."""
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, -(-count // columns))
    height, width = images.shape[-2:]
    # One inch per image, plus a gap beside it and a band for its caption above it.
    cell_width, cell_height = width * 1.3, height * 1.45
    figure, axis = plt.subplots(figsize=(columns * 1.3, rows * 1.45 + 0.35))
    figure.subplots_adjust(left=0, right=1, bottom=0, top=rows * 1.45 / (rows * 1.45 + 0.35))
    for index in range(count):
        left = (index % columns) * cell_width
        top = (index // columns) * cell_height + height * 0.4
        image = images[index].cpu().float()
        extent = (left, left + width, top + height, top)
        if image.dim() == 3 and image.shape[0] == 3:
            axis.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy(), extent=extent)
        else:
            axis.imshow(image.squeeze().numpy(), cmap="gray_r", vmin=0, vmax=1, extent=extent)
        axis.text(left + width / 2, top - height * 0.08, captions[index], fontsize=6.5,
                  ha="center", va="bottom")  # fmt: skip
    axis.set(xlim=(-0.15 * width, columns * cell_width), ylim=(rows * cell_height, 0))
    axis.set_aspect("equal")
    axis.axis("off")
    figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def sorted_accuracy_figure(
    per_class: list[dict], path: Path, note: str = "", lang: str = "en"
) -> Path:
    """Per-class accuracy from the easiest to the hardest class (ImageNet: 1,000 of them)."""
    accuracy = sorted(
        (100 * row["accuracy"] for row in per_class if row["accuracy"] is not None), reverse=True
    )
    figure, axis = plt.subplots(figsize=(8, 3.4))
    axis.plot(np.arange(1, len(accuracy) + 1), accuracy, color="#2c6e9b")
    axis.set(
        xlabel=report_words(lang, "figure.rank_axis"),
        ylabel=report_words(lang, "figure.accuracy_axis"),
        ylim=(0, 100.5),
        title=report_words(lang, "figure.sorted_title", count=len(accuracy))
        + (f"\n{note}" if note else ""),
    )
    axis.grid(alpha=0.3)
    return save_figure(figure, path)


# Above this many classes a chart of one bar (or one row) per class is unreadable.
MANY_CLASSES = 40


@drawn_in_language
def class_accuracy_figure(result: dict, path: Path, note: str = "", lang: str = "en") -> Path:
    """One bar per class, or for many classes the sorted accuracy curve."""
    if len(result["per_class"]) <= MANY_CLASSES:
        return per_class_figure(
            result["per_class"], result["easiest"], result["hardest"], path, note, lang
        )
    return sorted_accuracy_figure(result["per_class"], path, note, lang)
