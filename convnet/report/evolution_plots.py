"""The depth-evolution figure: the lecture's ImageNet chart in miniature (test error against
depth, each family labelled with its year) beside the published Fashion-MNIST accuracies."""

from __future__ import annotations

from pathlib import Path

from convnet.experiments.evolution import EvolutionResult
from convnet.report.plots import plt, save_figure, subset_note


def evolution_figure(result: EvolutionResult, path: Path) -> Path:
    """Left: test error (%) against depth, one point per model, coloured by year. Right: test
    accuracy per family in order of year, ours against Dive into Deep Learning's after 10
    epochs and the Fashion-MNIST benchmark's ResNet-18."""
    outcomes = result.by_depth()
    figure, (depth_axis, table_axis) = plt.subplots(
        1, 2, figsize=(12, 4.6), gridspec_kw={"width_ratios": [1.1, 1]}
    )
    years = [outcome.year or 0 for outcome in outcomes]
    depth_axis.scatter(
        [outcome.depth for outcome in outcomes],
        [100 * outcome.test_error for outcome in outcomes],
        c=years,
        cmap="viridis",
        s=60,
        zorder=3,
    )
    depth_axis.plot(
        [outcome.depth for outcome in outcomes],
        [100 * outcome.test_error for outcome in outcomes],
        color="#9aa5b1",
        linewidth=1,
        zorder=2,
    )
    deepest = max(outcome.depth for outcome in outcomes)
    for outcome in outcomes:
        right = outcome.depth > deepest / 2  # labels of the deeper half to the left
        depth_axis.annotate(
            f"{outcome.model} ({outcome.year or '?'})",
            (outcome.depth, 100 * outcome.test_error),
            textcoords="offset points",
            xytext=(-7 if right else 7, 3),
            ha="right" if right else "left",
            fontsize=8,
        )
    depth_axis.set(
        xlabel="depth (weight layers on the longest path)",
        ylabel="test error (%)",
        title=f"{result.settings['dataset']}: test error against depth",
    )
    notes = []
    if result.settings.get("train_subset"):
        notes.append(f"trained on {subset_note(result.num_train_images, None, 'images')}")
    if result.settings.get("test_subset"):
        notes.append(f"tested on {subset_note(result.num_test_images, None, 'test images')}")
    if notes:
        figure.suptitle("; ".join(notes), fontsize=9)
    depth_axis.margins(x=0.2, y=0.12)
    depth_axis.grid(alpha=0.3)

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
    epochs = result.settings["epochs"]
    label = f"ours, {epochs} epoch{'s' if epochs != 1 else ''}"
    table_axis.bar([p - width for p in positions], ours, width, label=label, color="#2f6db5")
    table_axis.bar(
        positions, book, width, label="Dive into Deep Learning, 10 epochs", color="#9aa5b1"
    )
    table_axis.bar(
        [p + width for p in positions],
        benchmark,
        width,
        label="Fashion-MNIST benchmark (ResNet-18)",
        color="#e0a030",
    )
    for position, value in zip(positions, ours, strict=True):
        table_axis.text(position - width, value + 0.8, f"{value:.1f}", ha="center", fontsize=7)
    table_axis.set_xticks(list(positions), [outcome.family for outcome in outcomes])
    # From 0: a bar's height is its accuracy; the printed values carry the small differences.
    table_axis.set(ylabel="test accuracy (%)", ylim=(0, 105), title="beside the published figures")
    table_axis.set_yticks(range(0, 101, 20))
    table_axis.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False, fontsize=8
    )
    table_axis.grid(axis="y", alpha=0.3)
    for axis in (depth_axis, table_axis):
        axis.spines[["top", "right"]].set_visible(False)
    return save_figure(figure, path)
