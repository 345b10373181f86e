"""The evolution experiment's cache of runs."""

from __future__ import annotations


def test_cache_key_follows_the_recipe():
    from convnet.experiments.evolution import EvolutionSettings, run_dir_for, training_config

    settings = EvolutionSettings(train_subset=100)
    first = run_dir_for(training_config(settings, "lenet5"), "runs")
    assert first == run_dir_for(training_config(settings, "lenet5"), "runs")
    for change in ({"epochs": 2}, {"lr": 0.1}, {"augment": False}, {"test_subset": 50}):
        other = EvolutionSettings(**{"train_subset": 100, **change})
        assert run_dir_for(training_config(other, "lenet5"), "runs") != first
    moved = EvolutionSettings(train_subset=100, device="cpu", data_dir="elsewhere")
    assert run_dir_for(training_config(moved, "lenet5"), "runs") == first


def test_models_under_the_accuracy_floor_are_named_and_kept_off_the_depth_line(monkeypatch):
    from pathlib import Path

    from convnet.report import evolution_plots, plots
    from tests.helpers.figure_data import evolution_result

    result = evolution_result()
    assert result.accuracy_floor == 0.85 and result.short_of_floor() == []
    result.outcomes[1].test_error = 0.40  # alexnet_mini at 60%: undertrained
    assert [o.model for o in result.short_of_floor()] == ["alexnet_mini"]
    document = result.to_dict()
    assert document["short_of_floor"] == ["alexnet_mini"]
    assert {row["model"]: row["passes_floor"] for row in document["models"]}[
        "alexnet_mini"
    ] is False

    drawn = []
    monkeypatch.setattr(evolution_plots, "save_figure", lambda figure, path: drawn.append(figure))
    evolution_plots.evolution_figure(result, Path("unused.png"))
    (figure,) = drawn
    (line,) = figure.axes[0].get_lines()
    assert list(line.get_xdata()) == [5, 11, 18]  # lenet5, vgg_mini, resnet_mini: not depth 8
    assert "under the 85% accuracy floor" in figure.get_suptitle()
    assert "alexnet_mini" in figure.get_suptitle()
    plots.plt.close(figure)

    result.settings["dataset"] = "cifar10"  # no floor known: every model drawn, and said so
    assert result.accuracy_floor is None and result.short_of_floor() == []
