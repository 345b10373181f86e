"""Training on real MNIST: accuracy after one epoch, files of a run, exact resume."""

import json

import pytest
import torch
from safetensors.torch import load_file

import convnet.engine.train as train_module
from convnet.engine.guards import learning_warning
from convnet.engine.recipe import short_run_batch_size
from convnet.engine.run import Run
from convnet.engine.train import TrainConfig, fit, learning_rate
from convnet.errors import UserError


@pytest.mark.slow
def test_one_epoch_of_lenet5_reaches_97_5_percent(trained_run):
    run_dir, result = trained_run
    assert result["top1_error"] <= 0.025, result["top1_error"]
    assert result["num_examples"] == 10_000 and result["epochs"] == 1
    for name in (
        "config.json",
        "metrics.csv",
        "model.safetensors",
        "checkpoint.safetensors",
        "results.json",
        "report.html",
        "figures/curves.png",
        "figures/confusion.png",
        "figures/per_class.png",
        "figures/mistakes.png",
        "steps.csv",
        "figures/steps.png",
    ):
        assert (run_dir / name).is_file(), name
    assert "figures/steps.png" in (run_dir / "report.html").read_text()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["batch_size"] == 128 and config["augment"] is True  # defaults were resolved
    assert set(result) >= {
        "model",
        "dataset",
        "num_examples",
        "top1_error",
        "top5_error",
        "per_class",
        "easiest",
        "hardest",
        "params",
        "epochs",
        "train_seconds",
        "images_per_second",
        "run_dir",
    }


def test_learning_rate_schedule_warms_up_then_decays():
    rates = [learning_rate(step, 100, 0.1, 0.1) for step in range(101)]
    assert rates[0] == pytest.approx(0.005)
    assert max(rates) == pytest.approx(0.1)
    assert rates.index(max(rates)) == 10
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_bad_configuration_is_a_user_error():
    for bad in (dict(epochs=0), dict(batch_size=0), dict(lr=-1.0)):
        with pytest.raises(UserError):
            TrainConfig(**bad).resolved()


def small_config(run_dir, **overrides) -> TrainConfig:
    values = dict(
        model="lenet5",
        epochs=2,
        batch_size=100,
        train_subset=1500,
        test_subset=500,
        checkpoint_every=4,
        out=str(run_dir),
        precision="fp32",
        device="cpu",
    )
    return TrainConfig(**{**values, **overrides})


@pytest.mark.parametrize("crash_after_checkpoint", [2, 4])  # mid-epoch 1, then end of epoch 1
def test_resume_after_a_crash_gives_identical_weights(
    mnist_dir, tmp_path, monkeypatch, crash_after_checkpoint
):
    fit(small_config(tmp_path / "straight"), log=lambda message: None)

    original, calls = train_module.save_checkpoint, []

    class Crash(BaseException):
        """Stands in for the process dying right after a checkpoint write."""

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == crash_after_checkpoint:
            raise Crash

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        fit(small_config(tmp_path / "crashed"), log=lambda message: None)
    monkeypatch.setattr(train_module, "save_checkpoint", original)
    assert not (tmp_path / "crashed" / "results.json").exists()
    fit(TrainConfig(), resume=tmp_path / "crashed", log=lambda message: None)

    straight = load_file(tmp_path / "straight" / "model.safetensors")
    resumed = load_file(tmp_path / "crashed" / "model.safetensors")
    for name, tensor in straight.items():
        assert torch.equal(tensor, resumed[name]), name
    # Every epoch's row alike but for its timing: losses, errors and learning rate.
    timing = {"epoch_seconds", "images_per_second"}
    straight_rows, resumed_rows = (
        [
            {k: v for k, v in row.items() if k not in timing}
            for row in Run(tmp_path / name).history()
        ]
        for name in ("straight", "crashed")
    )
    assert len(straight_rows) == 2
    assert set(straight_rows[0]) >= {"epoch", "train_loss", "train_error", "eval_loss", "lr"}
    assert resumed_rows == straight_rows


def test_resume_without_a_run_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        fit(TrainConfig(), resume=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])  # Ctrl-C; a scheduler's notice
def test_a_stop_signal_saves_a_checkpoint_and_says_how_to_resume(signal_name, mnist_dir, tmp_path):
    import json
    import signal
    import subprocess
    import sys
    import time

    from safetensors import safe_open

    run_dir = tmp_path / "interrupted"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "convnet",
            "train",
            "lenet5",
            "--epochs",
            "30",
            "--train-subset",
            "3000",
            "--out",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.csv").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(getattr(signal, signal_name))
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert f"convnet train --resume {run_dir}" in stderr and "Traceback" not in stderr
    with safe_open(run_dir / "checkpoint.safetensors", "pt") as checkpoint:
        state = json.loads(checkpoint.metadata()["state"])
    assert state["epoch"] * 24 + state["batch"] >= 24  # at least one whole epoch of 24 steps


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


def test_a_run_that_does_not_learn_says_so(mnist_dir, tmp_path, capsys):
    """16 steps at a learning rate far too small: the loss stays put, and the command says so
    after its results (and in results.json); steps.csv has one row per step."""
    from convnet.cli import main
    from convnet.engine.run import Run

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


@pytest.mark.parametrize(
    ("images", "epochs", "world_size", "expected"),
    [
        (60_000, 1, 1, 128),
        (2_000, 1, 1, 16),
        (2_000, 4, 1, 64),
        (6_000, 1, 1, 32),
        (300, 1, 1, 16),
        (2_000, 2, 2, 16),
        (12_800, 1, 1, 128),
    ],
)
def test_a_short_run_gets_a_batch_that_gives_it_enough_steps(images, epochs, world_size, expected):
    assert short_run_batch_size(128, images, epochs, world_size) == expected


def test_the_16_step_quick_run_learns(mnist_dir, tmp_path, capsys):
    """`--epochs 1 --train-subset 2000` took 16 steps at batch 128 and ended where it began
    (loss 2.28-2.29 of ln 10 = 2.30, 70-87% test error, over 4 seeds); at the batch fitted
    to the run it learns, and says why its batch is not the default."""
    from convnet.cli import main

    code = main(
        [
            "train",
            "lenet5",
            "--epochs",
            "1",
            "--train-subset",
            "2000",
            "--test-subset",
            "1000",
            "--out",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    steps = Run(tmp_path / "run").steps()
    last_tenth = [row["loss"] for row in steps[-len(steps) // 10 :]]
    assert len(steps) >= 100
    assert sum(last_tenth) / len(last_tenth) < 1.5
    assert result["top1_error"] < 0.4 and not result.get("warnings")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch_size"] == 16
