"""What stops or warns a run: a non-finite loss or weights, a batch too large for memory, a
loss that did not move."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import load_file

import convnet.engine.recipe as recipe_module
from convnet.cli import main
from convnet.engine.guards import learning_warning
from convnet.engine.run import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE, Run
from convnet.engine.train import TrainConfig, fit
from convnet.errors import UserError
from tests.helpers.cli import assert_clean_refusal, run_in_process
from tests.helpers.training import (
    SOURCES,
    assert_run_directory_is_whole,
    checkpoint_state,
    source_arguments,
)


@pytest.mark.parametrize("kind", SOURCES)
def test_a_non_finite_loss_stops_the_run(kind, folders, mnist_dir, tmp_path, capsys, one_thread):
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "lenet5",
            *source_arguments(kind, folders),
            "--epochs",
            "2",
            "--lr",
            "1e30",
            "--precision",
            "fp32",
            "--out",
            str(run_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Training stopped" in err and "try a smaller --lr" in err, err
    assert "Traceback" not in err and not (run_dir / "results.json").exists()


TRAIN = [
    "train",
    "lenet5",
    "--dataset",
    "mnist",
    "--train-subset",
    "640",
    "--test-subset",
    "200",
    "--epochs",
    "2",
    "--batch-size",
    "64",
    "--precision",
    "fp32",
    "--device",
    "cpu",
]


def test_a_batch_too_large_for_memory_names_the_batch_size(
    mnist_dir, tmp_path, monkeypatch, capsys
):

    def allocate(*args, **kwargs):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate "
            "68719476736 bytes. Error code 12 (Cannot allocate memory)"
        )

    monkeypatch.setattr(recipe_module.F, "cross_entropy", allocate)
    code = main([*TRAIN, "--out", str(tmp_path / "run")])
    assert_clean_refusal(
        code, capsys.readouterr().err, "a batch of 64 images does not fit", "--batch-size 32"
    )


@pytest.mark.slow
def test_absurd_learning_rate_stops_with_the_last_good_checkpoint(mnist_dir, tmp_path, capfd):
    run_dir = tmp_path / "diverged"
    result = run_in_process(
        capfd,
        "train",
        "lenet5",
        "--epochs",
        "1",
        "--train-subset",
        "3000",
        "--lr",
        "1e6",
        "--checkpoint-every",
        "1",
        "--precision",
        "fp32",
        "--out",
        str(run_dir),
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    found = re.search(
        r"Training stopped: loss became (nan|inf|-inf) at epoch 1, step (\d+)\.", result.stderr
    )
    assert found, result.stderr
    assert f"last good checkpoint is kept in {run_dir / CHECKPOINT_FILE}" in result.stderr
    assert "smaller --lr" in result.stderr
    state = checkpoint_state(run_dir / CHECKPOINT_FILE)
    assert (state["epoch"], state["batch"]) == (
        0,
        int(found[2]),
    )  # the state after the last finite loss
    for name, tensor in load_file(run_dir / CHECKPOINT_FILE).items():
        assert torch.isfinite(tensor).all(), name
    assert not (run_dir / WEIGHTS_FILE).exists() and not (run_dir / "results.json").exists()
    assert_run_directory_is_whole(run_dir)


def test_divergence_before_any_checkpoint_says_there_is_none(mnist_dir, tmp_path):
    config = TrainConfig(
        model="lenet5",
        epochs=1,
        batch_size=50,
        train_subset=500,
        test_subset=100,
        lr=1e6,
        precision="fp32",
        out=str(tmp_path / "run"),
    )
    with pytest.raises(UserError, match="No checkpoint had been written yet; try a smaller --lr"):
        fit(config, log=lambda message: None)
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [CONFIG_FILE]


def test_weights_that_become_non_finite_are_never_checkpointed(mnist_dir, tmp_path, monkeypatch):
    """A step can turn the weights into NaN while the loss that led to it was finite; the
    checkpoint after that step must not be written, the previous one kept."""
    original_step, steps = torch.optim.SGD.step, []

    def step_then_poison(self, *args, **kwargs):
        result = original_step(self, *args, **kwargs)
        steps.append(1)
        if len(steps) == 3:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("nan"))
        return result

    monkeypatch.setattr(torch.optim.SGD, "step", step_then_poison)
    config = TrainConfig(
        model="lenet5",
        epochs=1,
        batch_size=50,
        train_subset=500,
        test_subset=100,
        checkpoint_every=1,
        precision="fp32",
        out=str(tmp_path / "run"),
    )
    with pytest.raises(UserError, match="weights became non-finite at epoch 1, batch 3"):
        fit(config, log=lambda message: None)
    state = checkpoint_state(tmp_path / "run" / CHECKPOINT_FILE)
    assert (state["epoch"], state["batch"]) == (0, 2)
    for name, tensor in load_file(tmp_path / "run" / CHECKPOINT_FILE).items():
        assert torch.isfinite(tensor).all(), name


def _steps(losses: list[float]) -> list[dict]:
    return [
        {"step": i + 1, "epoch": 1, "loss": loss, "lr": 0.05, "images_per_second": 1.0}
        for i, loss in enumerate(losses)
    ]


@pytest.mark.parametrize(
    "losses, warned",
    [
        ([2.31, 2.30, 2.30, 2.29] * 4, True),  # 16 steps that learned nothing (1% lower)
        ([2.31] * 8 + [2.15] * 8, False),  # 7% lower: it moved
        ([0.12, 0.12, 0.11, 0.11] * 4, False),  # already fits (fine-tuning): nothing to learn
        ([2.3], False),
    ],  # one step tells nothing
)
def test_a_run_whose_loss_did_not_move_warns(losses, warned):
    warning = learning_warning(_steps(losses), num_classes=10)
    assert (warning is not None) is warned
    if warned:
        assert "barely moved (2.310 → 2.290 over 16 steps)" in warning
        assert all(flag in warning for flag in ("--epochs", "--train-subset", "--batch-size"))


def test_a_loss_that_rose_is_said_to_have_risen_with_a_lower_rate_advised():
    warning = learning_warning(_steps([1.4] * 4 + [2.8] * 4), num_classes=3)
    assert "the training loss rose (1.400 → 2.800 over 8 steps)" in warning
    assert "try a lower --lr" in warning and "higher --lr" not in warning


def test_a_run_that_does_not_learn_says_so(mnist_dir, tmp_path, capsys):
    """16 steps at a learning rate far too small: the loss stays put, and the command says so
    after its results (and in results.json); steps.csv has one row per step."""
    from convnet.cli import main

    code = main(
        [
            "train",
            "lenet5",
            "--epochs",
            "1",
            "--train-subset",
            "2048",
            "--test-subset",
            "256",
            "--lr",
            "1e-5",
            "--batch-size",
            "128",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    output = capsys.readouterr().out
    assert code == 0
    assert output.splitlines()[-1].startswith("Warning: the training loss barely moved")
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["warnings"] == [output.splitlines()[-1]]
    steps = Run(tmp_path / "run").steps()
    assert [row["step"] for row in steps] == list(range(1, 17))
    assert all(row["epoch"] == 1 and row["images_per_second"] > 0 for row in steps)
