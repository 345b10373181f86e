"""The command line as a user meets it: one line for a mistake on the command line, one
paragraph for every bad input (exit status 2, no traceback, nothing half-written), the
option named that set a path that cannot be written, and output cut short by a reader."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.cli import main
from convnet.engine.run import CHECKPOINT_FILE, CONFIG_FILE, WEIGHTS_FILE
from convnet.engine.train import TrainConfig, fit
from tests.helpers.cli import assert_user_error, run_in_process

# --- mistakes and bad input ------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments, says",
    [
        (["zoo", "--nosuchflag"], "convnet zoo: error: unrecognized arguments: --nosuchflag"),
        (["train", "lenet5", "--lr", "abc"], "convnet train: error: argument --lr"),
        (["evaluate", "x", "--compile", "maybe"], "convnet evaluate: error: argument --compile"),
    ],
)
def test_command_line_mistakes_get_one_line_from_the_command_given(arguments, says, capfd):
    result = run_in_process(capfd, *arguments)
    assert_user_error(result, says, f"See 'convnet {arguments[0]} --help'")
    assert "usage:" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_output_cut_short_by_a_closed_pipe_is_not_a_traceback():
    """`convnet summary resnet152 --json | head -c 10`: the reader leaves early."""
    process = subprocess.Popen(
        [sys.executable, "-m", "convnet", "summary", "resnet152", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.read(10)
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and "Traceback" not in error, error


def test_user_errors_exit_2_without_traceback(tmp_path, trained_run, capfd):
    run_dir, _ = trained_run
    assert_user_error(
        run_in_process(capfd, "train", "lenet6"), "Unknown model 'lenet6'", "lenet5_1998"
    )
    assert_user_error(
        run_in_process(capfd, "train", "lenet5", "--dataset", "cifar"), "Unknown data set", "mnist"
    )
    assert_user_error(run_in_process(capfd, "train", "lenet5", "--epochs", "-1"), "--epochs")
    assert_user_error(run_in_process(capfd, "train", "lenet5", "--device", "tpu"), "Unknown device")
    assert_user_error(
        run_in_process(capfd, "train", "lenet5", "--frobnicate"), "unrecognized arguments"
    )
    empty = {"CONVNET_DATA_DIR": str(tmp_path / "empty")}
    assert_user_error(
        run_in_process(capfd, "train", "lenet5", env=empty), "convnet data fetch mnist"
    )
    assert_user_error(run_in_process(capfd, "evaluate", str(tmp_path)), "no config.json")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((run_dir / "config.json").read_text())
    assert_user_error(run_in_process(capfd, "evaluate", str(half)), "has no weights", "--resume")
    (half / "metrics.csv").write_text((run_dir / "metrics.csv").read_text())  # an epoch ended
    message = run_in_process(capfd, "evaluate", str(half))
    assert_user_error(message, "has no weights", "the file was removed")
    assert "--resume" not in message.stderr
    assert_user_error(
        run_in_process(capfd, "evaluate", str(run_dir / "config.json")),
        "is a file, not a run directory",
    )
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    assert_user_error(
        run_in_process(capfd, "predict", str(run_dir), str(not_image)),
        "notes.png",
        "not a readable image",
    )
    assert_user_error(
        run_in_process(capfd, "predict", str(run_dir), str(tmp_path / "absent.png")), "no such file"
    )
    if Path("/dev/null").exists():
        assert_user_error(
            run_in_process(capfd, "predict", str(run_dir), "/dev/null"), "not a regular file"
        )
    wrong = tmp_path / "wrong.safetensors"
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, wrong)
    assert_user_error(
        run_in_process(capfd, "predict", "lenet5", "--weights", str(wrong), str(not_image)),
        "does not fit",
    )


PROC = Path("/proc")
needs_proc = pytest.mark.skipif(
    not (PROC / "self").is_dir(), reason="needs /proc, Linux's process file system"
)


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "existing-file.png"
    path.write_bytes(b"a file, not a folder")
    return path


def assert_refused(result, *phrases: str) -> str:
    """Exit status 2 and one paragraph holding `phrases`; no traceback. The message."""
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert message.startswith("convnet: error: "), result.stderr
    for phrase in phrases:
        assert phrase in message, message
    return message


# --- through the command line: the option that set the path --------------------------


@needs_proc
def test_evaluate_report_in_proc(trained_run, capfd):
    result = run_in_process(
        capfd, "evaluate", str(trained_run[0]), "--test-subset", "50", "--report", "/proc/nope"
    )
    assert_refused(result, "Cannot write /proc/nope/", "nothing can be made in /proc", "--report")


def test_evaluate_report_at_an_existing_file(trained_run, a_file, capfd):
    result = run_in_process(
        capfd, "evaluate", str(trained_run[0]), "--test-subset", "50", "--report", str(a_file)
    )
    assert_refused(result, f"{a_file} is a file, not a folder", "--report")
    assert a_file.read_bytes() == b"a file, not a folder"


def test_experiment_figure_under_an_existing_file(mnist_dir, a_file, capfd):
    result = run_in_process(capfd, "experiment", "shift", "--figure", str(a_file / "shift.png"))
    assert_refused(
        result, f"Cannot write {a_file / 'shift.png'}", f"{a_file} is a file", "--figure"
    )


@needs_proc
def test_export_out_in_proc(trained_run, capfd):
    result = run_in_process(
        capfd, "export", str(trained_run[0]), "--format", "onnx", "--out", "/proc/x.onnx"
    )
    assert_refused(result, "nothing can be made in /proc", "--out")


def test_train_out_under_an_existing_file(a_file, capfd):
    result = run_in_process(capfd, "train", "lenet5", "--out", str(a_file / "run"))
    assert_refused(result, f"{a_file} is a file, not a folder", "--out")


def test_predict_a_folder_says_it_is_a_folder(trained_run, tmp_path, capfd):
    folder = tmp_path / "digits"
    folder.mkdir()
    message = assert_refused(
        run_in_process(capfd, "predict", str(trained_run[0]), str(folder)), "is a folder"
    )
    assert "no such file" not in message


# --- bad inputs through the command line -------------------------------------------------


@pytest.fixture(scope="module")
def small_run(mnist_dir, tmp_path_factory) -> Path:
    """A finished one-epoch run (a few hundred images): files to damage."""
    run_dir = tmp_path_factory.mktemp("reliability") / "small"
    fit(
        TrainConfig(
            model="lenet5",
            epochs=1,
            train_subset=256,
            test_subset=100,
            batch_size=64,
            precision="fp32",
            out=str(run_dir),
        ),
        log=lambda message: None,
    )
    return run_dir


def half_written(small_run: Path, target: Path, keep: dict[str, object]) -> Path:
    """A run directory holding `keep`: file name → bytes, or a fraction of the good file."""
    target.mkdir()
    for name, content in keep.items():
        data = (small_run / name).read_bytes()
        if isinstance(content, float):
            data = data[: int(len(data) * content)]
        elif isinstance(content, bytes):
            data = content
        (target / name).write_bytes(data)
    return target


def snapshot(folder: Path) -> dict[str, bytes] | None:
    if not folder.exists():
        return None
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


BAD_INPUTS = {
    # case: (arguments (RUN = the damaged or missing run directory), files of RUN, phrases)
    "negative epochs": (
        ["train", "lenet5", "--epochs", "-3", "--out", "RUN"],
        None,
        ["--epochs must be at least 1, not -3"],
    ),
    "batch size 0": (
        ["train", "lenet5", "--batch-size", "0", "--out", "RUN"],
        None,
        ["--batch-size must be at least 1, not 0"],
    ),
    "unknown device": (
        ["train", "lenet5", "--device", "tpu", "--out", "RUN"],
        None,
        ["Unknown device 'tpu'", "cpu"],
    ),
    "negative subset": (
        ["train", "lenet5", "--train-subset", "-5", "--out", "RUN"],
        None,
        ["--train-subset must be at least 1"],
    ),
    "negative checkpoint interval": (
        ["train", "lenet5", "--checkpoint-every", "-1", "--out", "RUN"],
        None,
        ["--checkpoint-every must be at least 1, not -1"],
    ),
    "missing run directory": (["evaluate", "RUN"], None, ["RUN", "does not exist"]),
    "missing run directory on --resume": (
        ["train", "--resume", "RUN"],
        None,
        ["Cannot resume", "does not exist"],
    ),
    "config without weights": (
        ["evaluate", "RUN"],
        {CONFIG_FILE: 1.0},
        ["has no weights", "convnet train --resume"],
    ),
    "truncated model.safetensors": (
        ["evaluate", "RUN"],
        {CONFIG_FILE: 1.0, WEIGHTS_FILE: 0.5},
        ["model.safetensors is a damaged or truncated"],
    ),
    "empty model.safetensors": (
        ["predict", "RUN", "digit.png"],
        {CONFIG_FILE: 1.0, WEIGHTS_FILE: b""},
        ["damaged or truncated"],
    ),
    "truncated checkpoint on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: 1.0, CHECKPOINT_FILE: 0.6},
        ["checkpoint.safetensors is a damaged or truncated"],
    ),
    "no checkpoint on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: 1.0},
        ["Cannot resume", "checkpoint.safetensors does not exist"],
    ),
    "truncated config.json on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: 0.5, CHECKPOINT_FILE: 1.0},
        ["config.json is not a valid run configuration"],
    ),
    "config.json of the wrong shape": (
        ["evaluate", "RUN"],
        {CONFIG_FILE: b"[1, 2]", WEIGHTS_FILE: 1.0},
        ["not a valid run configuration", "no JSON object"],
    ),
    "config.json with a wrong type on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: b'{"model": "lenet5", "epochs": "ten"}', CHECKPOINT_FILE: 1.0},
        ['"epochs" is "ten"'],
    ),
    "another model's checkpoint on --resume": (
        ["train", "--resume", "RUN"],
        {CONFIG_FILE: b'{"model": "mlp"}', CHECKPOINT_FILE: 1.0},
        ["does not fit this run's model", "another run"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_message(case, small_run, tmp_path, capsys):
    """`convnet.cli.main` is the command line less the process: an exception other than a
    UserError would escape here (and print a traceback there)."""
    arguments, files, phrases = BAD_INPUTS[case]
    run_dir = tmp_path / "run"
    if files is not None:
        half_written(small_run, run_dir, files)
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "digit.png")
    before = snapshot(run_dir)
    arguments = [
        str(run_dir) if a == "RUN" else str(tmp_path / a) if a.endswith(".png") else a
        for a in arguments
    ]
    assert main(arguments) == 2
    stderr = capsys.readouterr().err
    message = stderr.strip()
    assert message.startswith("convnet: error: ") and "\n" not in message, stderr
    for phrase in phrases:
        assert phrase.replace("RUN", str(run_dir)) in message, message
    assert snapshot(run_dir) == before  # nothing written, nothing half-written
