"""The lecture's ImageNet chart: the ILSVRC winners' top-5 error by year, 2010–2017, each
bar labelled with its network and depth, against one human's 5.1%."""

from __future__ import annotations

from pathlib import Path

from convnet.models.imagenet import HUMAN_TOP5_ERROR, ILSVRC_WINNERS, Winner
from convnet.report.plots import plt, save_figure


def bar_label(winner: Winner) -> str:
    depth = (
        f"{winner.depth} layers"
        if winner.depth
        else "shallow"
        if winner.year < 2012
        else "ensemble"
    )
    return f"{winner.network}\n{depth}"


def ilsvrc_history_chart(
    path: Path, winners: tuple[Winner, ...] = ILSVRC_WINNERS, human: float = HUMAN_TOP5_ERROR
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
            f"{winner.top5_error:g}%\n{bar_label(winner)}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    axis.axhline(
        human,
        color="#c0392b",
        linestyle="--",
        linewidth=1.2,
        label=f"human estimate {human:g}% (Russakovsky et al. 2015)",
    )
    axis.legend(loc="upper right", frameon=False, fontsize=9)
    axis.set(
        xlabel="ILSVRC year",
        ylabel="top-5 error (%)",
        title="ImageNet classification: winners' top-5 error by year",
        ylim=(0, max(errors) * 1.35),
    )
    axis.grid(axis="y", alpha=0.3)
    axis.spines[["top", "right"]].set_visible(False)
    return save_figure(figure, path)
