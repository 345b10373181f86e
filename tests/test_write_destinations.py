"""A place that cannot be written is the user's to change, not a bug: a file where a folder
should be, a folder where a file should be, a special file system such as /proc. The shared
writes (`convnet.files`) say so in one paragraph naming the path and the reason, the command
line adds the option that set the path, and the exit status is 2 — never a traceback. Errors
that are not about the destination still surface as they are.

The tests run as root too, so no permission is taken away with chmod: the destinations are
under an existing regular file (ENOTDIR, EEXIST) and under /proc (ENOENT).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from conftest import run_cli

import convnet.files as files

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


# --- the shared helpers ---------------------------------------------------------------


def test_a_file_where_a_folder_should_be(a_file):
    blocked = f"{a_file} is a file, not a folder"
    for target in (a_file / "x.png", a_file / "figures" / "x.png"):
        with pytest.raises(files.WriteFailed, match=f"Cannot write {target}: {blocked}"):
            files.atomic_write_bytes(target, b"data")
    with pytest.raises(files.WriteFailed, match=blocked):
        files.ensure_writable(a_file / "run")
    with pytest.raises(files.WriteFailed, match=blocked):
        files.make_folder(a_file / "figures")
    with pytest.raises(files.WriteFailed, match=f"{a_file}: it is a file, not a folder"):
        files.ensure_writable(a_file)
    with pytest.raises(files.WriteFailed, match=blocked):
        files.check_destination(a_file / "x.onnx")
    files.check_destination(a_file.parent / "new" / "x.onnx")  # nothing in the way
    assert a_file.read_bytes() == b"a file, not a folder"
    assert not (a_file.parent / "new").exists()  # the check makes nothing


def test_a_folder_where_a_file_should_be(tmp_path):
    (tmp_path / "kept").write_text("kept")
    with pytest.raises(files.WriteFailed, match=f"Cannot write {tmp_path}: it is a folder"):
        files.atomic_write_bytes(tmp_path, b"data")
    assert [path.name for path in tmp_path.iterdir()] == ["kept"]  # no temporary file left


@needs_proc
def test_a_special_file_system_where_nothing_can_be_made():
    made_in_proc = "nothing can be made in /proc"
    with pytest.raises(files.WriteFailed, match=f"Cannot write /proc/nope/x.png: {made_in_proc}"):
        files.atomic_write_bytes(PROC / "nope" / "x.png", b"data")
    with pytest.raises(files.WriteFailed, match=made_in_proc):
        files.atomic_write_bytes(PROC / "x.onnx", b"data")
    with pytest.raises(files.WriteFailed, match=made_in_proc):
        files.ensure_writable(PROC)
    with pytest.raises(files.WriteFailed, match=made_in_proc):
        files.make_folder(PROC / "nope")


def test_other_errors_are_not_taken_for_the_destinations(tmp_path, monkeypatch):
    # reads elsewhere: a missing file is not a place that cannot be written
    assert files.explain(OSError(errno.ENOENT, os.strerror(errno.ENOENT), "x")) is None
    # an error that says nothing about the destination is left as it is (a bug to see)
    assert files.explain_destination(OSError(errno.EBADF, "Bad file descriptor"), tmp_path) is None

    def broken(*args, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr(files.os, "fsync", broken)
    with pytest.raises(OSError, match="Bad file descriptor") as raised:
        files.atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert not isinstance(raised.value, files.WriteFailed)
    with pytest.raises(TypeError):
        files.atomic_write_bytes(tmp_path / "y.bin", "text, not bytes")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []  # and no temporary file left behind


# --- through the command line: the option that set the path --------------------------


@needs_proc
def test_evaluate_report_in_proc(trained_run):
    result = run_cli(
        "evaluate", str(trained_run[0]), "--test-subset", "50", "--report", "/proc/nope"
    )
    assert_refused(result, "Cannot write /proc/nope/", "nothing can be made in /proc", "--report")


def test_evaluate_report_at_an_existing_file(trained_run, a_file):
    result = run_cli(
        "evaluate", str(trained_run[0]), "--test-subset", "50", "--report", str(a_file)
    )
    assert_refused(result, f"{a_file} is a file, not a folder", "--report")
    assert a_file.read_bytes() == b"a file, not a folder"


def test_experiment_figure_under_an_existing_file(mnist_dir, a_file):
    result = run_cli("experiment", "shift", "--figure", str(a_file / "shift.png"))
    assert_refused(
        result, f"Cannot write {a_file / 'shift.png'}", f"{a_file} is a file", "--figure"
    )


@needs_proc
def test_export_out_in_proc(trained_run):
    result = run_cli("export", str(trained_run[0]), "--format", "onnx", "--out", "/proc/x.onnx")
    assert_refused(result, "nothing can be made in /proc", "--out")


def test_train_out_under_an_existing_file(a_file):
    result = run_cli("train", "lenet5", "--out", str(a_file / "run"))
    assert_refused(result, f"{a_file} is a file, not a folder", "--out")


def test_predict_a_folder_says_it_is_a_folder(trained_run, tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    message = assert_refused(run_cli("predict", str(trained_run[0]), str(folder)), "is a folder")
    assert "no such file" not in message
