"""The steps' counts stay on the device between logging points (convnet/engine/train.py:
`LOG_INTERVAL`, `step_counts.Pending`): steps.csv and the weights are those of reading them every
step, and the step itself reads nothing from the device in between."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import convnet.engine.train as train_module
from convnet.engine.train import TrainConfig, fit
from tests.helpers.distributed import CPU
from tests.helpers.training import checkpoint_state, quiet


def _config(out, **values) -> TrainConfig:
    base = dict(model="lenet5", dataset="mnist", train_subset=480, test_subset=100, epochs=2,
                batch_size=16, precision="fp32", device="cpu", out=str(out), lr=0.05)  # fmt: skip
    return TrainConfig(**{**base, **values})


def _steps(run) -> list[dict]:
    """steps.csv's rows without their speed (seconds measured, not computed)."""
    with (run / "steps.csv").open() as handle:
        return [
            {k: v for k, v in row.items() if "second" not in k} for row in csv.DictReader(handle)
        ]


def test_steps_and_weights_are_those_of_reading_every_step(
    mnist_dir, tmp_path, monkeypatch, one_thread
):
    """Read every step (as before the interval) and every 50 steps, with checkpoints every
    7 of an epoch's 30: the same rows, values and weights, bit for bit."""
    runs = {}
    for interval in (1, 50):
        monkeypatch.setattr(train_module, "LOG_INTERVAL", interval)
        runs[interval] = tmp_path / f"every-{interval}"
        fit(_config(runs[interval], checkpoint_every=7), log=quiet)
    every_step, logged = _steps(runs[1]), _steps(runs[50])
    assert len(every_step) == 60 and every_step == logged
    first, second = (load_file(runs[i] / "model.safetensors") for i in (1, 50))
    assert all(torch.equal(first[name], second[name]) for name in first)


@pytest.mark.parametrize("interval", [1, 50])
def test_the_step_waits_for_the_device_only_at_logging_points(
    interval, mnist_dir, tmp_path, monkeypatch, one_thread
):
    """.item(), .tolist(), float() and int() of a tensor make the host wait for the device;
    counted inside the epochs' steps (the evaluations and checkpoints after them apart):
    once per logging point, 125 steps of an epoch read every 50 steps at 3 points."""
    calls = []
    counting = [False]
    for name in ("item", "tolist", "__float__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(tensor, *args, _original=original, _name=name):
            if counting[0]:
                calls.append(_name)
            return _original(tensor, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    epoch = train_module.train_one_epoch

    def counted_epoch(*args, **kwargs):
        counting[0] = True
        try:
            return epoch(*args, **kwargs)
        finally:
            counting[0] = False

    monkeypatch.setattr(train_module, "train_one_epoch", counted_epoch)
    monkeypatch.setattr(train_module, "LOG_INTERVAL", interval)
    fit(_config(tmp_path / "run", train_subset=2000, epochs=1), log=quiet)
    steps = 125
    if interval == 1:
        assert len(calls) >= steps  # what the counting would catch
    else:
        assert len(calls) <= steps // interval + 2, calls


def test_under_torchrun_a_stop_asked_of_one_rank_stops_all_at_the_same_step(folders, tmp_path):
    """Rank 1 alone is asked after step 2; the flag rides on the logging point's collective,
    so both ranks stop after step 5 (the counts are read every 5 steps here) with a
    checkpoint of that step, rather than rank 0 waiting for a rank that left."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "tests.helpers.stop_once", "train", "lenet5", "--data", str(folders),
         "--workers", "0", "--epochs", "2", "--batch-size", "4", "--out", str(out), *CPU,
         "--backend", "gloo"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode != 0  # torchrun reports the ranks' status 130 as a failure
    assert "Interrupted: checkpoint saved at epoch 1, batch 5." in result.stderr, result.stderr
    assert checkpoint_state(out / "checkpoint.safetensors")["batch"] == 5
    assert [int(row["step"]) for row in _steps(out)] == [1, 2, 3, 4, 5]
