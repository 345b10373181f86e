"""One writer per run directory (convnet/engine/run_lock.py): a second training on the same
--out is refused naming the first, a lock left by a process that ended is taken over and
said, the lock is given back however training ends; and a finished run whose report is
missing gets it from `--resume` without training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from convnet.engine import run_lock
from convnet.engine.run import Run
from convnet.engine.run_lock import LOCK_FILE
from tests.helpers.cli import refused, run_in_process

TRAIN = ["train", "lenet5", "--dataset", "mnist", "--train-subset", "256", "--test-subset", "64"]
SHORT = [*TRAIN, "--epochs", "1", "--batch-size", "64", "--precision", "fp32"]

HOLDER = textwrap.dedent(
    """
    import fcntl, json, os, sys, time
    handle = open(sys.argv[1], "a+")
    fcntl.flock(handle, fcntl.LOCK_EX)
    handle.write(json.dumps({"pid": os.getpid(), "host": "elsewhere", "started": 0,
                             "command": "convnet train lenet5 --out RUN"}))
    handle.flush()
    print("held", flush=True)
    time.sleep(120)
    """
)


@pytest.fixture
def held_by_another_process(tmp_path):
    """RUN/.writer.lock held by a process of its own, as a training in progress holds it."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run_dir / LOCK_FILE)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    yield run_dir, holder.pid
    holder.kill()
    holder.wait()


def test_a_second_writer_is_refused_naming_the_first(
    held_by_another_process, mnist_dir, capsys, one_thread
):
    run_dir, pid = held_by_another_process
    error = refused(
        capsys,
        [*SHORT, "--out", str(run_dir)],
        "is being written by another training",
        f"process {pid} on elsewhere",
        "give another --out",
    )
    assert len(error.strip().splitlines()) == 1
    assert not (run_dir / "config.json").exists() and not (run_dir / "steps.csv").exists()


def test_a_lock_left_by_an_ended_process_is_taken_over_and_said(
    tmp_path, mnist_dir, capfd, one_thread
):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    left = {"pid": int(ended.stdout), "host": "here", "started": 0, "command": "convnet train"}
    (run_dir / LOCK_FILE).write_text(json.dumps(left))
    result = run_in_process(capfd, *SHORT, "--out", str(run_dir))
    assert result.returncode == 0, result.stderr
    assert (
        f"Took over the writer's lock of {run_dir} left by process {left['pid']}" in result.stderr
    )
    assert not (run_dir / LOCK_FILE).exists()  # given back at the end
    assert Run(run_dir).finished


@pytest.mark.parametrize("existed", [False, True])
def test_the_lock_is_given_back_when_training_fails(existed, tmp_path, folders, capsys, one_thread):
    """…and a run directory the refused training made is not left behind empty; one the
    user made stays."""
    run_dir = tmp_path / "run"
    if existed:
        run_dir.mkdir()
    too_small = ["--data", str(folders), "--workers", "0", "--image-size", "8"]
    refused(capsys, ["train", "lenet5", *too_small, "--out", str(run_dir)], "cannot take")
    assert not run_lock.holds(run_dir) and not (run_dir / LOCK_FILE).exists()
    assert run_dir.is_dir() == existed


@pytest.mark.slow
def test_two_trainings_at_once_one_refused(tmp_path, mnist_dir):
    """Two real `convnet train` processes on one --out: the first trains (for as long as it
    takes the second to start and be refused; then a stop signal ends it with a checkpoint),
    the second exits 2 naming it."""
    run_dir = tmp_path / "run"
    arguments = [
        *(sys.executable, "-m", "convnet", "train", "lenet5", "--train-subset", "3000"),
        *("--test-subset", "64", "--epochs", "200", "--out", str(run_dir)),
    ]
    first = subprocess.Popen([*arguments, "--threads", "1"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / LOCK_FILE).exists() and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = subprocess.run(arguments, capture_output=True, text=True, timeout=300)
    while not (run_dir / "metrics.csv").exists() and first.poll() is None:
        assert time.monotonic() < deadline  # an epoch done: the stop handler is in place
        time.sleep(0.05)
    still_training = first.poll() is None
    first.send_signal(signal.SIGTERM)
    _, first_errors = first.communicate(timeout=300)
    assert still_training, first_errors
    assert first.returncode == 130, first_errors
    assert second.returncode == 2, second.stderr
    assert f"process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    steps = [line.split(",")[0] for line in (run_dir / "steps.csv").read_text().splitlines()]
    assert len(steps) == len(set(steps))  # every step once


def test_a_finished_run_without_its_report_gets_it_from_resume(
    tmp_path, mnist_dir, capsys, one_thread
):
    """A run trained with --no-report (or killed between results.json and its report) gets
    the report from `train --resume`, nothing trained again."""
    run_dir = tmp_path / "run"
    trained = run_in_process(capsys, *SHORT, "--out", str(run_dir), "--no-report", "--json")
    assert trained.returncode == 0 and "report" not in json.loads(trained.stdout)
    assert not (run_dir / "report.html").exists() and not (run_dir / "figures").exists()
    results = (run_dir / "results.json").read_bytes()
    weights = (run_dir / "model.safetensors").read_bytes()
    refused(capsys, ["train", "--resume", str(run_dir), "--no-report"], "Its report is missing")
    result = run_in_process(capsys, "train", "--resume", str(run_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert "has no report; writing it (nothing is trained)" in result.stderr
    assert json.loads(result.stdout)["report"] == str(run_dir / "report.html")
    assert (run_dir / "report.html").is_file()
    assert (run_dir / "results.json").read_bytes() == results
    assert (run_dir / "model.safetensors").read_bytes() == weights
    # with the report there, a resume with nothing to train is refused as before
    refused(capsys, ["train", "--resume", str(run_dir)], "has finished its 1 epoch;")


def test_the_lock_is_counted_within_one_process(tmp_path):
    with run_lock.holding(tmp_path, print):
        with run_lock.holding(tmp_path, print):
            assert (tmp_path / LOCK_FILE).is_file()
        assert run_lock.holds(tmp_path)
    assert not run_lock.holds(tmp_path) and not (tmp_path / LOCK_FILE).exists()
    assert os.listdir(tmp_path) == []
