"""TensorBoard logging (--tensorboard): the scalars are the numbers of steps.csv and
metrics.csv, and without TensorBoard installed the command says how to install it."""

from __future__ import annotations

import csv
import json
import sys

import pytest

from convnet.cli import main
from convnet.engine.run import Run
from tests.helpers.cli import run_in_process

TINY = (
    "--epochs",
    "2",
    "--train-subset",
    "300",
    "--test-subset",
    "100",
    "--batch-size",
    "50",
    "--precision",
    "fp32",
    "--threads",
    "1",
)


def test_tensorboard_scalars_are_the_numbers_of_steps_csv_and_metrics_csv(
    mnist_dir, tmp_path, capfd
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run_in_process(capfd, "train", "lenet5", *TINY, "--tensorboard", "--out", str(out), check=True)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    steps = Run(out).steps()
    assert len(steps) == 12  # 300 images / 50 per step × 2 epochs
    for column, tag in (
        ("loss", "train/loss"),
        ("lr", "train/lr"),
        ("images_per_second", "train/images_per_second"),
    ):
        logged = [(event.step, event.value) for event in events.Scalars(tag)]
        assert [step for step, _ in logged] == [int(row["step"]) for row in steps]
        # steps.csv holds 6 significant digits, the event file float32
        assert [value for _, value in logged] == pytest.approx(
            [row[column] for row in steps], rel=1e-5
        ), tag
    with (out / "metrics.csv").open() as handle:
        epochs = list(csv.DictReader(handle))
    logged = events.Scalars("epoch/eval_error")
    assert [event.step for event in logged] == [6, 12]
    assert [event.value for event in logged] == pytest.approx(
        [float(row["eval_error"]) for row in epochs], rel=1e-6
    )
    assert json.loads((out / "config.json").read_text())["tensorboard"] is True


def test_tensorboard_missing_is_refused_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    status = main(["train", "lenet5", "--tensorboard", "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert status == 2 and "pip install tensorboard" in error and "Traceback" not in error
    assert not (tmp_path / "run").exists()
