"""Stop signals: a checkpoint saved, and how to resume said."""

import json

import pytest

from convnet.engine.run import Run


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])  # Ctrl-C; a scheduler's notice
def test_a_stop_signal_saves_a_checkpoint_and_says_how_to_resume(signal_name, mnist_dir, tmp_path):
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


def test_a_stop_at_or_past_the_end_says_it_changes_nothing(mnist_dir, tmp_path, capsys):
    from convnet.cli import main

    arguments = ["train", "lenet5", "--dataset", "mnist", "--epochs", "1", "--no-report"]
    subset = ["--train-subset", "256", "--test-subset", "64", "--threads", "1"]
    out = ["--out", str(tmp_path / "run"), "--stop-after-epoch", "2", "--json"]
    assert main([*arguments, *subset, *out]) == 0
    captured = capsys.readouterr()
    assert "--stop-after-epoch 2: the run ends after 1 epoch." in captured.err
    assert "stopped_after_epoch" not in json.loads(captured.out)
    assert Run(tmp_path / "run").unfinished_note() is None  # a finished run has no note


def test_an_unfinished_run_says_so_where_its_weights_are_used(mnist_dir, tmp_path, capsys):
    """Evaluating (as predicting, explaining and exporting: the same loading) a run stopped
    with --stop-after-epoch notes whose weights these are, and how to finish it, on standard
    error and among --json's warnings."""
    from convnet.cli import main

    run = tmp_path / "run"
    arguments = ["train", "lenet5", "--dataset", "mnist", "--epochs", "2", "--no-report"]
    subset = ["--train-subset", "256", "--test-subset", "64", "--threads", "1"]
    assert main([*arguments, *subset, "--out", str(run), "--stop-after-epoch", "1"]) == 0
    capsys.readouterr()
    evaluate = ["evaluate", str(run), "--test-subset", "64", "--json"]
    assert main(evaluate) == 0
    captured = capsys.readouterr()
    assert (
        f"Note: {run} has not finished: these are its weights after epoch 1 of 2. "
        f"Finish it with 'convnet train --resume {run}'."
    ) in captured.err
    assert json.loads(captured.out)["warnings"][-1].startswith(f"Note: {run} has not finished")
