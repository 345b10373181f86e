"""Figures of how a run trained: loss and error per epoch, and loss and learning rate per step."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from convnet.report.figure_fonts import drawn_in_language
from convnet.report.plots import (
    legend_outside,
    percent_log_axis,
    plt,
    report_words,
    save_figure,
    split_name,
)


def training_curves_figure(
    history: list[dict], split: str = "test", note: str = "", lang: str = "en"
) -> plt.Figure:
    """Loss and error per epoch, training images against the held-out `split`; the error on
    a log axis labelled in plain percentages (0% drawn at a stated floor)."""

    def words(key: str, **values: object) -> str:
        return report_words(lang, f"figure.{key}", **values)

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, error_axis) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], "o-", label=words("train_loss"))
    loss_axis.set(
        xlabel=words("epoch"), ylabel=words("cross_entropy"), title=words("training_loss")
    )
    series = {
        words("train"): [100 * row["train_error"] for row in history],
        split_name(split, lang): [100 * row["eval_error"] for row in history],
    }
    if all("ema_eval_error" in row for row in history):  # --model-ema: the kept model's
        shown = words("moving_average", split=split_name(split, lang))
        series[shown] = [100 * row["ema_eval_error"] for row in history]
    drawn = percent_log_axis(error_axis, list(series.values()), words("error_axis"), lang)
    for label, values, marker in zip(series, drawn, ("o-", "s-", "^-"), strict=False):
        error_axis.plot(epochs, values, marker, label=label)
    error_axis.set(xlabel=words("epoch"), title=words("error_title"))
    legend_outside(error_axis)
    for axis in (loss_axis, error_axis):
        axis.grid(alpha=0.3)
        if len(epochs) <= 10:  # every epoch its tick (one epoch: 1, not 0.96 … 1.04)
            axis.set_xticks(epochs)
            axis.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)
        else:
            axis.xaxis.get_major_locator().set_params(integer=True)
    if note:
        figure.suptitle(note, fontsize=9)
    figure.tight_layout()
    return figure


@drawn_in_language
def training_curves(
    history: list[dict], path: Path, split: str = "test", note: str = "", lang: str = "en"
) -> Path:
    """`training_curves_figure` saved as PNG."""
    return save_figure(training_curves_figure(history, split, note, lang), path)


def smoothing_window(steps: int) -> int:
    """Steps per moving average: 1/25 of the run, at least 3 and at most a third of it, so
    a 40-step run averages 3, a 100-step run 4 and a 2,000-step run 80 — smooth enough to
    see the trend, short enough to see the warm-up."""
    return max(1, min(steps // 3, max(3, steps // 25)))


def moving_average(values: list[float], window: int) -> np.ndarray:
    """Trailing mean over `window` values (the first window − 1 values have none)."""
    totals = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    return (totals[window:] - totals[:-window]) / window


def steps_figure(steps: list[dict], note: str = "", lang: str = "en") -> plt.Figure:
    """The training loss of every optimizer step (raw, light) with its moving average, and
    below it the learning rate of every step; dotted lines where an epoch begins."""

    def words(key: str, **values: object) -> str:
        return report_words(lang, f"figure.{key}", **values)

    numbers = [row["step"] for row in steps]
    losses = [row["loss"] for row in steps]
    figure, (loss_axis, rate_axis) = plt.subplots(
        2, 1, figsize=(10, 4.8), sharex=True, height_ratios=[2, 1]
    )
    loss_axis.plot(numbers, losses, color="#9ec3e6", linewidth=0.8, label=words("each_step"))
    window = smoothing_window(len(steps))
    if window > 1:
        loss_axis.plot(
            numbers[window - 1 :],
            moving_average(losses, window),
            color="#1f5fa0",
            linewidth=1.8,
            label=words("last_steps", window=window),
        )
    loss_axis.set(
        ylabel=words("cross_entropy"),
        ylim=(0, max(losses) * 1.05),
        title=words("steps_title"),
    )
    rate_axis.plot(
        numbers, [row["lr"] for row in steps], color="#d1495b", label=words("learning_rate")
    )
    rate_axis.set(
        xlabel=words("optimizer_step"),
        ylabel=words("learning_rate"),
        ylim=(0, max(row["lr"] for row in steps) * 1.1),
    )
    rate_axis.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    starts = [
        (row["step"], row["epoch"])
        for before, row in zip(steps, steps[1:], strict=False)
        if row["epoch"] != before["epoch"]
    ]
    for axis in (loss_axis, rate_axis):
        for start, _ in starts:
            axis.axvline(start - 0.5, color="#7f8c9a", linestyle=":", linewidth=1)
        axis.grid(alpha=0.3)
    every = math.ceil(len(starts) / 6)  # at most 6 labels: "epoch 2" is ~45 px wide at size 7
    for start, epoch in starts[::every] if starts else []:
        loss_axis.annotate(
            words("epoch_number", epoch=f"{epoch:.0f}"),
            (start, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -3),
            textcoords="offset points",
            va="top",
            fontsize=7,
            color="#5a6570",
        )
    legend_outside(loss_axis)
    legend_outside(rate_axis)
    if note:
        figure.suptitle(note, fontsize=9)
    figure.tight_layout()
    return figure


@drawn_in_language
def training_steps(steps: list[dict], path: Path, note: str = "", lang: str = "en") -> Path:
    """`steps_figure` saved as PNG."""
    return save_figure(steps_figure(steps, note, lang), path)
