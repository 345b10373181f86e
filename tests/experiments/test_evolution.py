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
