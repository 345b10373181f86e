"""Honest, readable figures (issue 16): each figure is drawn, not saved, and inspected
through matplotlib — tick labels, axis limits, titles, and where legends sit."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from convnet.cli import main
from convnet.report import claims_plots, evolution_plots, plots, training_plots, zoo_chart
from tests.helpers.figure_data import cost_result, evolution_result, invariance_result


@pytest.fixture
def drawn(monkeypatch):
    """The figures the report modules would save, drawn and kept instead of written."""
    figures = []

    def keep(figure, path):
        figure.canvas.draw()
        figures.append(figure)
        return Path(path)

    for module in (plots, training_plots, claims_plots, evolution_plots, zoo_chart):
        monkeypatch.setattr(module, "save_figure", keep)
    yield figures
    for figure in figures:
        plots.plt.close(figure)


def history(errors: list[tuple[float, float]]) -> list[dict]:
    return [
        {"epoch": epoch, "train_loss": 1.0 / epoch, "train_error": train, "eval_error": test}
        for epoch, (train, test) in enumerate(errors, start=1)
    ]


def steps(count: int = 120, per_epoch: int = 40) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "step": step,
            "epoch": 1 + (step - 1) // per_epoch,
            "loss": 2.3 * np.exp(-step / 40) + 0.1 + 0.2 * rng.random(),
            "lr": 0.05 * min(1, step / 10) * (1 + np.cos(np.pi * step / count)) / 2,
            "images_per_second": 1000.0,
        }
        for step in range(1, count + 1)
    ]


def legend_overlaps(figure) -> list[str]:
    """Data a legend covers: the points of lines (sampled along each segment) and the bars
    whose display extents fall inside a legend's box."""
    renderer = figure.canvas.get_renderer()
    legends = [*figure.legends] + [axis.get_legend() for axis in figure.axes if axis.get_legend()]
    boxes = [legend.get_window_extent(renderer) for legend in legends]
    covered = []
    for axis in figure.axes:
        for line in axis.get_lines():
            points = line.get_transform().transform(line.get_xydata())
            points = points[np.isfinite(points).all(axis=1)]
            for start, end in zip(points, points[1:], strict=False):
                for share in np.linspace(0, 1, 12):
                    x, y = start + share * (end - start)
                    if any(box.contains(x, y) for box in boxes):
                        covered.append(f"{axis.get_title()}: line {line.get_label()}")
            for x, y in points:
                if any(box.contains(x, y) for box in boxes):
                    covered.append(f"{axis.get_title()}: point of {line.get_label()}")
        for patch in axis.patches:
            if isinstance(patch, Rectangle) and patch.get_height():
                extent = patch.get_window_extent(renderer)
                if any(box.overlaps(extent) for box in boxes):
                    covered.append(f"{axis.get_title()}: bar at {patch.get_x():.2f}")
    return covered


def y_labels(axis) -> list[str]:
    return [label.get_text() for label in axis.get_yticklabels() if label.get_text()]


def titles(figure) -> str:
    texts = [axis.get_title() for axis in figure.axes]
    return " | ".join([*texts, figure.get_suptitle()])


@pytest.mark.parametrize(
    "errors", [[(0.2, 0.15), (0.05, 0.03), (0.01, 0.008)], [(0.3, 0.2), (0.01, 0.0), (0.0, 0.0)]]
)
def test_error_axis_labels_are_plain_percentages_and_zero_is_drawn_at_a_floor(errors):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 0 on a log axis warns; it must not happen
        figure = training_plots.training_curves_figure(history(errors))
        figure.canvas.draw()
    axis = figure.axes[1]
    labels = y_labels(axis)
    assert len(labels) >= 3 and all(label.endswith("%") for label in labels), labels
    assert not any("10^" in label or "$" in label or "e-" in label for label in labels), labels
    assert axis.get_yscale() == "log"
    drawn = [value for line in axis.get_lines() for value in line.get_ydata()]
    assert min(drawn) > 0 and axis.get_ylim()[0] <= min(drawn)
    assert ("0% drawn at" in axis.get_ylabel()) == any(0.0 in pair for pair in errors)
    plots.plt.close(figure)


@pytest.mark.parametrize("epochs", [1, 3, 25])
def test_the_epoch_axis_ticks_whole_epochs(epochs):
    figure = training_plots.training_curves_figure(history([(0.3, 0.2)] * epochs))
    figure.canvas.draw()
    for axis in figure.axes:
        ticks = [tick for tick in axis.get_xticks() if axis.get_xlim()[0] <= tick]
        ticks = [tick for tick in ticks if tick <= axis.get_xlim()[1]]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks
        assert 1 in ticks or epochs > 10
    plots.plt.close(figure)


def test_an_error_of_zero_everywhere_is_a_linear_axis():
    figure = training_plots.training_curves_figure(history([(0.0, 0.0), (0.0, 0.0)]))
    figure.canvas.draw()
    assert figure.axes[1].get_yscale() == "linear" and figure.axes[1].get_ylim()[0] == 0
    plots.plt.close(figure)


def test_steps_figure_shows_loss_smoothed_and_the_rate_with_epoch_lines():
    figure = training_plots.steps_figure(steps(), "trained on 2,000 of 60,000 training images")
    loss_axis, rate_axis = figure.axes
    labels = [line.get_label() for line in loss_axis.get_lines()]
    assert "each step" in labels and any(label.startswith("mean of the last") for label in labels)
    rate = next(line for line in rate_axis.get_lines() if line.get_label() == "learning rate")
    assert len(rate.get_xdata()) == 120
    boundaries = [
        line.get_xdata()[0] for line in rate_axis.get_lines() if line.get_linestyle() == ":"
    ]
    assert boundaries == [40.5, 80.5]
    assert "2,000 of 60,000" in titles(figure)
    figure.canvas.draw()
    assert legend_overlaps(figure) == []
    plots.plt.close(figure)


def test_a_class_at_zero_percent_is_visible():
    per_class = [
        {"index": i, "name": str(i), "accuracy": a, "count": 50}
        for i, a in enumerate([0.98, 0.0, 0.97, 0.99])
    ]
    figure = plots.per_class_accuracy_figure(per_class, [], [per_class[1]])
    figure.canvas.draw()
    axis = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    strokes = [
        line
        for line in axis.get_lines()
        if min(line.get_xdata()) <= 1 <= max(line.get_xdata()) and line.get_linewidth() >= 2
    ]
    assert strokes, "no stroke where the bar of 0% is"
    stroke = strokes[0]  # a thick line on the axis, not clipped in half by it
    assert stroke.get_visible() and not stroke.get_clip_on() and max(stroke.get_ydata()) == 0
    assert stroke.get_window_extent(renderer).width > 20
    values = [text for text in axis.texts if text.xy[0] == 1]
    assert [text.get_text() for text in values] == ["0.0"]
    assert axis.get_ylim()[0] == 0  # bars from 0: a bar's height is its accuracy
    plots.plt.close(figure)


def test_per_class_colours_follow_the_rule_and_say_when_none_stands_apart():
    per_class = [{"index": i, "name": str(i), "accuracy": 0.97, "count": 1000} for i in range(5)]
    figure = plots.per_class_accuracy_figure(per_class, [], [])
    assert "no class stands apart" in figure.axes[0].get_title()
    colours = {tuple(bar.get_facecolor()) for bar in figure.axes[0].patches}
    assert len(colours) == 1
    plots.plt.close(figure)


def test_confusion_matrix_is_per_true_class_and_keeps_the_most_confused_of_many():
    confusion = np.diag(np.full(30, 50))
    confusion[3, 7] = confusion[7, 3] = 20
    confusion[25, 26] = 5
    figure = plots.confusion_matrix_figure(confusion.tolist(), [f"c{i}" for i in range(30)])
    axis = figure.axes[0]
    shown = [label.get_text() for label in axis.get_yticklabels()]
    assert len(shown) == plots.CONFUSION_CLASSES and {"c3", "c7", "c25", "c26"} <= set(shown)
    assert "20%" not in "".join(text.get_text() for text in axis.texts)  # 20 of 70: 29%
    assert any(text.get_text() == "29%\n20" for text in axis.texts)
    assert "of 30" in axis.get_title()
    plots.plt.close(figure)


def test_a_confusion_cell_never_rounds_to_100_or_0_percent():
    """979 of 980 right is not "100%", nor 1 of 980 wrong "0%" (a new user's reading)."""
    figure = plots.confusion_matrix_figure([[979, 1], [0, 980]], ["a", "b"])
    texts = sorted(text.get_text() for text in figure.axes[0].texts)
    assert texts == ["100%\n980", "<1%\n1", ">99%\n979"]
    plots.plt.close(figure)


def test_evolution_bars_start_at_zero_and_a_subset_says_so(drawn):
    evolution_plots.evolution_figure(evolution_result(train_subset=5_000), Path("unused.png"))
    (figure,) = drawn
    bar_axis = figure.axes[1]
    assert bar_axis.get_ylim()[0] == 0
    assert "5,000" in titles(figure)
    assert legend_overlaps(figure) == []


def test_zoo_chart_from_zero_and_legend_clear(drawn):
    zoo_chart.ilsvrc_history_chart(Path("unused.png"))
    assert drawn[0].axes[0].get_ylim()[0] == 0
    assert legend_overlaps(drawn[0]) == []


def test_cost_figure_has_no_bars_on_log_axes_and_readable_labels(drawn):
    claims_plots.cost_bars(cost_result(), Path("unused.png"))
    (figure,) = drawn
    for axis in figure.axes:
        if axis.get_yscale() == "log":
            assert not [patch for patch in axis.patches if isinstance(patch, Rectangle)]
            labels = y_labels(axis)
            assert labels and not any("$" in label for label in labels), labels
        elif axis.patches:
            assert axis.get_ylim()[0] == 0
    assert legend_overlaps(figure) == []


def test_invariance_curves_on_a_subset_say_so_and_legend_is_clear(drawn):
    claims_plots.invariance_curves(invariance_result(test_subset=2_000), Path("unused.png"))
    claims_plots.invariance_curves(invariance_result(), Path("unused.png"))
    subset, whole = drawn
    assert "2,000 of 10,000" in titles(subset) and " of " not in titles(whole)
    assert legend_overlaps(subset) == []


def test_legend_check_catches_a_legend_on_the_data():
    """The overlap test must be able to fail: a legend forced onto dense curves."""
    figure, axis = plots.plt.subplots()
    for offset in range(5):
        axis.plot(np.linspace(0, 1, 50), np.linspace(0, 1, 50) + offset / 10, label=str(offset))
    axis.legend(loc="center")
    figure.canvas.draw()
    assert legend_overlaps(figure)
    plots.plt.close(figure)


@pytest.fixture(scope="module")
def subset_run(mnist_dir, tmp_path_factory) -> Path:
    """A quick run on 600 training and 500 test digits, through the command line (in this
    process)."""
    run_dir = tmp_path_factory.mktemp("runs") / "subset"
    code = main(
        [
            "train",
            "lenet5",
            "--epochs",
            "2",
            "--train-subset",
            "600",
            "--test-subset",
            "500",
            "--batch-size",
            "32",
            "--out",
            str(run_dir),
            "--json",
        ]
    )
    assert code == 0
    return run_dir


def test_run_report_shows_steps_and_says_when_built_from_a_subset(subset_run, drawn, tmp_path):
    from convnet.engine.evaluate import evaluate
    from convnet.engine.run import Run
    from convnet.report.run_report import write_run_report

    page = (subset_run / "report.html").read_text()
    assert "figures/steps.png" in page and (subset_run / "figures" / "steps.png").is_file()
    run_dir = shutil.copytree(subset_run, tmp_path / "copy")
    run = Run(run_dir)
    loaded = run.load()
    evaluation = evaluate(loaded.model, loaded.evaluation_source(workers=0), torch.device("cpu"))
    write_run_report(run, loaded, evaluation)
    assert len(drawn) >= 5  # curves, steps, confusion, per-class, mistakes
    for figure in drawn:
        text = titles(figure)
        assert "600 of 60,000 training images" in text or "500 of 10,000 test images" in text, text
        assert legend_overlaps(figure) == []
    (run_dir / "steps.csv").unlink()  # a run from before steps.csv: no figure, no reference
    shutil.rmtree(run_dir / "figures")
    write_run_report(run, loaded, evaluation)
    assert "steps.png" not in (run_dir / "report.html").read_text()
    assert json.loads((run_dir / "results.json").read_text())["num_examples"] == 500


def test_an_image_grid_places_each_image_under_its_caption(drawn):
    """Images and captions in one pair of axes: each image at its cell (a row of `columns`,
    then the next row), drawn as dark ink on light paper, its caption just above it."""
    ink = torch.zeros(10, 1, 32, 32)
    ink[:, :, 8:24, 8:24] = 1.0  # a dark square in each
    plots.image_grid(ink, [f"#{index}" for index in range(10)], Path("grid.png"), "Grid", 4)
    axis = drawn[-1].axes[0]
    places = [image.get_extent() for image in axis.images]
    assert len(places) == 10 and len(drawn[-1].axes) == 1
    lefts = sorted({round(left) for left, *_ in places})
    tops = sorted({round(top) for *_, top in places})
    assert len(lefts) == 4 and len(tops) == 3  # 4 columns, rows of 4, 4 and 2
    assert places[4][0] == places[0][0] and places[4][3] > places[0][2]  # below the first
    for image, text in zip(axis.images, axis.texts, strict=True):
        left, right, bottom, top = image.get_extent()
        x, y = text.get_position()
        assert left < x < right and top - 32 < y < top  # centred, in the band above
        assert image.get_cmap().name == "gray_r" and image.get_array().max() == 1.0
    plots.image_grid(ink[:3], ["a", "b", "c"], Path("few.png"), "Few", 8)
    assert drawn[-1].get_figwidth() < drawn[-2].get_figwidth()  # as wide as 3 images
