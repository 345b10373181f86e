"""Resuming a run: after a crash or a SIGKILL, bit for bit; to more epochs; and what a
resumed run cannot change."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import convnet.engine.train as train_module
from convnet.cli import main
from convnet.engine.recipe import Schedule
from convnet.engine.run import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE, Run
from convnet.engine.train import TrainConfig, fit
from convnet.errors import UserError
from convnet.files import PARTIAL_SUFFIX
from tests.helpers.cli import run_cli
from tests.helpers.training import (
    SOURCES,
    assert_run_directory_is_whole,
    checkpoint_state,
    config_for,
    quiet,
    source_arguments,
)


@pytest.mark.parametrize("kind", SOURCES)
def test_crash_and_resume_gives_identical_weights(
    kind, folders, mnist_dir, tmp_path, monkeypatch, one_thread
):
    straight = fit(config_for(kind, folders, tmp_path / "straight"), log=quiet)
    original, calls = train_module.save_checkpoint, []

    class Crash(BaseException):
        """Stands in for the process dying right after a checkpoint write."""

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # MNIST: mid-epoch 1; the folder's 3 steps: the end of epoch 1
            raise Crash

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        fit(config_for(kind, folders, tmp_path / "crashed"), log=quiet)
    monkeypatch.setattr(train_module, "save_checkpoint", original)
    assert not Run(tmp_path / "crashed").finished
    resumed = fit(TrainConfig(), resume=tmp_path / "crashed", log=quiet)
    first, second = (
        load_file(tmp_path / name / "model.safetensors") for name in ("straight", "crashed")
    )
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    # identical weights, identical files (the metadata is written in a fixed order)
    assert (tmp_path / "straight" / "model.safetensors").read_bytes() == (
        tmp_path / "crashed" / "model.safetensors"
    ).read_bytes()
    assert resumed["top1_error"] == straight["top1_error"]

    def without_timing(run_dir: Path) -> list[dict]:
        timing = ("epoch_seconds", "images_per_second")
        return [{k: v for k, v in row.items() if k not in timing} for row in Run(run_dir).history()]

    assert without_timing(tmp_path / "crashed") == without_timing(tmp_path / "straight")


@pytest.mark.parametrize("kind", SOURCES)
def test_resume_with_more_epochs_continues_the_run(
    kind, folders, mnist_dir, tmp_path, capsys, one_thread
):
    run_dir = tmp_path / "run"
    base = ["train", "lenet5", *source_arguments(kind, folders), "--precision", "fp32"]
    assert main([*base, "--epochs", "1", "--out", str(run_dir)]) == 0
    first = load_file(run_dir / "model.safetensors")
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["epochs"] == 3 and "Continuing to 3 epochs (planned: 1)" in captured.err
    assert [row["epoch"] for row in Run(run_dir).history()] == [1, 2, 3]
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 3
    later = load_file(run_dir / "model.safetensors")
    assert any(not torch.equal(first[name], later[name]) for name in first)  # it trained
    # What a resumed run cannot change is refused, not ignored.
    assert main(["train", "--resume", str(run_dir), "--lr", "0.5"]) == 2
    assert "--lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--epochs", "2"]) == 2
    assert "already trained 3 epochs" in capsys.readouterr().err
    finished = (run_dir / "results.json").read_bytes()
    assert main(["train", "--resume", str(run_dir)]) == 2  # nothing left to train
    assert "has finished its 3 epochs" in capsys.readouterr().err
    assert (run_dir / "results.json").read_bytes() == finished


def test_resume_refuses_other_images(folders, tmp_path, capsys, one_thread):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lenet5",
                "--data",
                str(folders),
                "--epochs",
                "1",
                "--workers",
                "0",
                "--out",
                str(run_dir),
            ]
        )
        == 0
    )
    fewer = shutil.copytree(folders, tmp_path / "fewer")
    for path in list((fewer / "train" / "n01440764").iterdir())[:3]:
        path.unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--data", str(fewer)]) == 2
    assert "the same images" in capsys.readouterr().err


# One thread everywhere, so that runs started side by side compute the same floating-point sums.
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
KILL_TEST_RUN = [
    "train",
    "lenet5",
    "--epochs",
    "2",
    "--train-subset",
    "3000",
    "--test-subset",
    "1000",
    "--batch-size",
    "128",
    "--checkpoint-every",
    "5",
    "--precision",
    "fp32",
    "--device",
    "cpu",
    "--no-report",
]


def start(arguments: list[str], log: Path) -> subprocess.Popen:
    with log.open("w") as handle:  # a file, not a pipe: a full pipe would stall the child
        return subprocess.Popen(
            [sys.executable, "-m", "convnet", *arguments],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, **SINGLE_THREAD},
        )


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_gives_bit_identical_weights(mnist_dir, tmp_path):
    straight_dir, killed_dir = tmp_path / "straight", tmp_path / "killed"
    straight = start([*KILL_TEST_RUN, "--out", str(straight_dir)], tmp_path / "straight.log")
    killed = start([*KILL_TEST_RUN, "--out", str(killed_dir)], tmp_path / "killed.log")
    try:
        check_kill_and_resume(straight, killed, straight_dir, killed_dir, tmp_path)
    finally:  # never leave a training process behind a failed assertion
        for process in (straight, killed):
            if process.poll() is None:
                process.kill()
                process.wait()


def check_kill_and_resume(straight, killed, straight_dir, killed_dir, tmp_path) -> None:
    deadline = time.monotonic() + 240
    while killed.poll() is None and time.monotonic() < deadline:
        state = checkpoint_state(killed_dir / CHECKPOINT_FILE)
        if state is not None and state["batch"] > 0:  # a mid-epoch checkpoint exists
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert killed.wait(timeout=60) == -signal.SIGKILL, (tmp_path / "killed.log").read_text()
    state = checkpoint_state(killed_dir / CHECKPOINT_FILE)
    assert 0 < state["batch"] < 24, state  # killed inside an epoch of 24 steps
    assert not (killed_dir / "results.json").exists()
    # A kill that lands inside a write leaves its temporary file; plant one so the test
    # always sees resume clear it, whenever the kill happened to land.
    stale = killed_dir / f".{CHECKPOINT_FILE}.killed{PARTIAL_SUFFIX}"
    stale.write_bytes((killed_dir / CHECKPOINT_FILE).read_bytes()[:1000])

    resumed = run_cli(
        "train", "--resume", str(killed_dir), "--no-report", env=SINGLE_THREAD, check=True
    )
    position = f"at epoch {state['epoch'] + 1}, batch {state['batch']}"
    assert position in resumed.stderr, resumed.stderr
    assert straight.wait(timeout=300) == 0, (tmp_path / "straight.log").read_text()

    weights = [straight_dir / WEIGHTS_FILE, killed_dir / WEIGHTS_FILE]
    expected, actual = (load_file(path) for path in weights)
    assert expected.keys() == actual.keys()
    for name, tensor in expected.items():  # bit for bit, not just numerically equal
        assert tensor.dtype == actual[name].dtype and tensor.shape == actual[name].shape, name
        assert tensor.numpy().tobytes() == actual[name].numpy().tobytes(), name
    assert weights[0].read_bytes() == weights[1].read_bytes()  # metadata and all
    columns = (
        "epoch",
        "train_loss",
        "train_error",
        "eval_error",
        "eval_top5_error",
        "lr",
    )  # not times
    histories = [
        [
            [row[column] for column in columns]
            for row in csv.DictReader((run_dir / "metrics.csv").read_text().splitlines())
        ]
        for run_dir in (straight_dir, killed_dir)
    ]
    assert histories[0] == histories[1] and len(histories[0]) == 2
    # steps.csv: one row per step, the redone steps not twice, the same losses and rates
    steps = [Run(run_dir).steps() for run_dir in (straight_dir, killed_dir)]
    assert [row["step"] for row in steps[1]] == list(range(1, 49))
    for straight_row, resumed_row in zip(*steps, strict=True):
        assert {k: v for k, v in straight_row.items() if k != "images_per_second"} == {
            k: v for k, v in resumed_row.items() if k != "images_per_second"
        }
        assert resumed_row["epoch"] == 1 + (resumed_row["step"] - 1) // 24
        config = TrainConfig.from_json((killed_dir / CONFIG_FILE).read_text())
        expected = Schedule.of(config, steps_per_epoch=24)(int(resumed_row["step"]) - 1)
        assert resumed_row["lr"] == pytest.approx(expected, rel=1e-5)
    for name in ("top1_error", "top5_error", "per_class"):
        results = [json.loads((d / "results.json").read_text()) for d in (straight_dir, killed_dir)]
        assert results[0][name] == results[1][name], name
    assert_run_directory_is_whole(killed_dir)


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
