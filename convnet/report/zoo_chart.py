"""The lecture's ImageNet chart: the ILSVRC winners' top-5 error by year, 2010–2017, each
bar labelled with its network and depth, against one human's 5.1%, in the language asked
for (the catalog's `figure.zoo.*` messages; network names stay as published)."""

from __future__ import annotations

from pathlib import Path

from convnet import i18n
from convnet.models.imagenet import HUMAN_TOP5_ERROR, ILSVRC_WINNERS, Winner
from convnet.report.figure_fonts import drawn_in_language
from convnet.report.plots import plt, save_figure


def words(lang: str, key: str, **values: object) -> str:
    return i18n.text(lang, f"figure.zoo.{key}", **values)


def _decimal(value: float, lang: str) -> str:
    """3.57 as published, with `lang`'s decimal mark."""
    return f"{value:g}".replace(".", i18n.text(lang, "number.decimal"))


def bar_label(winner: Winner, lang: str = "en") -> str:
    depth = (
        words(lang, "layers", depth=winner.depth)
        if winner.depth
        else words(lang, "shallow")
        if winner.year < 2012
        else words(lang, "ensemble")
    )
    return f"{winner.network}\n{depth}"


@drawn_in_language
def ilsvrc_history_chart(
    path: Path,
    winners: tuple[Winner, ...] = ILSVRC_WINNERS,
    human: float = HUMAN_TOP5_ERROR,
    lang: str = "en",
) -> Path:
    """Bars of top-5 error (%) by year, deep networks in a second colour, the human line."""
    figure, axis = plt.subplots(figsize=(9, 4.6))
    years = [str(winner.year) for winner in winners]
    errors = [winner.top5_error for winner in winners]
    colours = [
        "#9aa5b1" if winner.depth is None and winner.year < 2012 else "#2f6db5"
        for winner in winners
    ]
    bars = axis.bar(years, errors, color=colours, width=0.7)
    for bar, winner in zip(bars, winners, strict=True):
        # Labels of bars under the human line start above it, so the line crosses no text.
        axis.text(
            bar.get_x() + bar.get_width() / 2,
            max(bar.get_height(), human) + 0.5,
            f"{_decimal(winner.top5_error, lang)}%\n{bar_label(winner, lang)}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axis.axhline(
        human,
        color="#c0392b",
        linestyle="--",
        linewidth=1.2,
        label=words(lang, "human", error=_decimal(human, lang)),
    )
    axis.legend(loc="upper right", frameon=False, fontsize=9)
    axis.set(
        xlabel=words(lang, "year_axis"),
        ylabel=words(lang, "error_axis"),
        title=words(lang, "title"),
        ylim=(0, max(errors) * 1.35),
    )
    axis.grid(axis="y", alpha=0.3)
    axis.spines[["top", "right"]].set_visible(False)
    return save_figure(figure, path)
