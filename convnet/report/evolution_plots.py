"""The depth-evolution figure: the lecture's ImageNet chart in miniature (test error against
depth, each family labelled with its year) beside the published Fashion-MNIST accuracies,
in the language asked for (the catalog's `figure.evolution.*` messages).

A model under its data set's accuracy floor is drawn hollow and grey, apart from the
others, and the depth line runs only through the models above the floor: an undertrained
model's error says nothing about its depth."""

from __future__ import annotations

from pathlib import Path

from convnet import i18n
from convnet.experiments.evolution import EvolutionResult
from convnet.report.figure_fonts import drawn_in_language
from convnet.report.plots import plt, report_words, save_figure, subset_note

UNDER_FLOOR = "#b0b7bf"


def words(lang: str, key: str, **values: object) -> str:
    """The catalog's `figure.evolution.<key>` in `lang`, integers written as `lang` does."""
    written = {
        name: i18n.number(value, lang) if isinstance(value, int) else value
        for name, value in values.items()
    }
    return i18n.text(lang, f"figure.evolution.{key}", **written)


def _notes(result: EvolutionResult, lang: str) -> list[str]:
    """What the figure's title must say: subsets used, and the models under the floor."""
    from convnet.data.datasets import get_dataset_spec

    notes = []
    sizes = get_dataset_spec(result.settings["dataset"]).split_sizes
    what = report_words(lang, "what.images")
    for split, used, key in (
        ("train", result.num_train_images, "trained_on"),
        ("test", result.num_test_images, "tested_on"),
    ):
        images = subset_note(used, sizes.get(split), what, lang)
        if result.settings.get(f"{split}_subset") and images:
            notes.append(words(lang, key, images=images))
    short = result.short_of_floor()
    if short:
        notes.append(
            words(
                lang,
                "under_floor",
                floor=i18n.percent(result.accuracy_floor, lang, 0),
                models=", ".join(outcome.model for outcome in short),
            )
        )
    elif result.accuracy_floor is None:
        notes.append(words(lang, "no_floor", dataset=result.settings["dataset"]))
    return notes


@drawn_in_language
def evolution_figure(result: EvolutionResult, path: Path, lang: str = "en") -> Path:
    """Left: test error (%) against depth, one point per model, coloured by year, the line
    through the models above the floor only. Right: test accuracy per family in order of
    year, ours against Dive into Deep Learning's after 10 epochs and the Fashion-MNIST
    benchmark's ResNet-18."""
    outcomes = result.by_depth()
    figure, (depth_axis, table_axis) = plt.subplots(
        1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.1, 1]}
    )
    _depth_panel(depth_axis, result, outcomes, lang)
    notes = _notes(result, lang)
    if notes:  # above the axes' titles, one line higher for each note
        figure.suptitle("\n".join(notes), fontsize=9, y=0.99 + 0.045 * len(notes))
    _accuracy_bars(table_axis, result, outcomes, lang)
    for axis in (depth_axis, table_axis):
        axis.spines[["top", "right"]].set_visible(False)
    return save_figure(figure, path)


def _depth_panel(depth_axis: plt.Axes, result: EvolutionResult, outcomes: list, lang: str) -> None:
    """Test error against depth: the models above the floor coloured by year and joined,
    those under it hollow, each labelled."""
    passing = [outcome for outcome in outcomes if result.passes(outcome)]
    years = [outcome.year or 0 for outcome in passing]
    if passing:
        depth_axis.scatter(
            [outcome.depth for outcome in passing],
            [100 * outcome.test_error for outcome in passing],
            c=years,
            cmap="viridis",
            s=60,
            zorder=3,
        )
    if len(passing) > 1:
        depth_axis.plot(
            [outcome.depth for outcome in passing],
            [100 * outcome.test_error for outcome in passing],
            color="#9aa5b1",
            linewidth=1,
            zorder=2,
        )
    short = [outcome for outcome in outcomes if not result.passes(outcome)]
    if short:
        depth_axis.scatter(
            [outcome.depth for outcome in short],
            [100 * outcome.test_error for outcome in short],
            facecolors="none",
            edgecolors=UNDER_FLOOR,
            s=60,
            zorder=3,
        )
    deepest = max(outcome.depth for outcome in outcomes)
    for outcome in outcomes:
        right = outcome.depth > deepest / 2  # labels of the deeper half to the left
        label = f"{outcome.model} ({outcome.year or '?'})"
        if not result.passes(outcome):
            label = words(lang, "under_label", model=outcome.model, year=str(outcome.year or "?"))
        depth_axis.annotate(
            label,
            (outcome.depth, 100 * outcome.test_error),
            textcoords="offset points",
            xytext=(-7 if right else 7, 3),
            ha="right" if right else "left",
            fontsize=8,
            color="black" if result.passes(outcome) else "#6b7580",
        )
    depth_axis.set(
        xlabel=words(lang, "depth_axis"),
        ylabel=words(lang, "error_axis"),
        title=words(lang, "depth_title", dataset=result.settings["dataset"]),
    )
    depth_axis.margins(x=0.2, y=0.12)
    depth_axis.grid(alpha=0.3)


def _accuracy_bars(
    table_axis: plt.Axes, result: EvolutionResult, outcomes: list, lang: str
) -> None:
    """Test accuracy per family in order of year: ours, the book's after 10 epochs and the
    benchmark's."""
    width = 0.27
    outcomes = sorted(outcomes, key=lambda outcome: (outcome.year or 0, outcome.depth))
    positions = range(len(outcomes))
    ours = [100 * outcome.test_accuracy for outcome in outcomes]
    book = [
        100 * outcome.published()["d2l_10_epochs"]["accuracy"]
        if "d2l_10_epochs" in outcome.published()
        else float("nan")
        for outcome in outcomes
    ]
    benchmark = [
        100 * outcome.published()["benchmark"]["accuracy"]
        if "benchmark" in outcome.published()
        else float("nan")
        for outcome in outcomes
    ]
    colours = ["#2f6db5" if result.passes(outcome) else UNDER_FLOOR for outcome in outcomes]
    table_axis.bar(
        [p - width for p in positions],
        ours,
        width,
        label=words(lang, "ours", epochs=result.settings["epochs"]),
        color=colours,
    )
    table_axis.bar(positions, book, width, label=words(lang, "d2l"), color="#9aa5b1")
    table_axis.bar(
        [p + width for p in positions],
        benchmark,
        width,
        label=words(lang, "benchmark"),
        color="#e0a030",
    )
    for position, value in zip(positions, ours, strict=True):
        table_axis.text(
            position - width, value + 0.8, i18n.number(value, lang, 1), ha="center", fontsize=7
        )
    table_axis.set_xticks(list(positions), [outcome.family for outcome in outcomes])
    # From 0: a bar's height is its accuracy; the printed values carry the small differences.
    table_axis.set(
        ylabel=words(lang, "accuracy_axis"), ylim=(0, 105), title=words(lang, "bars_title")
    )
    table_axis.set_yticks(range(0, 101, 20))
    table_axis.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False, fontsize=8
    )
    table_axis.grid(axis="y", alpha=0.3)
