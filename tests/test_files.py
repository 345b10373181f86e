"""The shared writes (convnet/files.py) when a destination cannot be written or the machine
fails, not the user.

A place that cannot be written is the user's to change, not a bug: a file where a folder
should be, a folder where a file should be, a special file system such as /proc. The shared
writes say so in one paragraph naming the path and the reason, and the exit status is 2 —
never a traceback (tests/test_cli.py checks that the command line names the option that set
the path). Errors that are not about the destination still surface as they are. The tests
run as root too, so no permission is taken away with chmod: the destinations are under an
existing regular file (ENOTDIR, EEXIST) and under /proc (ENOENT).

When the machine fails: a full disk, a file-size limit, a read-only or forbidden path and an
I/O error each end with exit status 2 and one paragraph naming the path, the cause and what
to do, and nothing is lost: the last checkpoint stays whole and the run resumes bit-exactly;
a failed fetch leaves no partial data set and no empty folder. Faults are injected portably:
a child process with a file-size limit (RLIMIT_FSIZE, with SIGXFSZ ignored so the write
fails with EFBIG instead of killing it) for a disk that fills up, and errors raised at the
shared write mechanism for the rest."""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import convnet.files as files
from convnet.cli import main
from convnet.engine.checkpoint import load_checkpoint
from convnet.engine.recipe import parameter_groups
from convnet.models import get_model
from tests.helpers.cli import assert_clean_refusal

PROC = Path("/proc")
needs_proc = pytest.mark.skipif(
    not (PROC / "self").is_dir(), reason="needs /proc, Linux's process file system"
)


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "existing-file.png"
    path.write_bytes(b"a file, not a folder")
    return path


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


# --- when the machine fails ---------------------------------------------------------

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


def limited(limit_bytes: int):
    """preexec_fn of a child whose files may not grow past `limit_bytes`."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply


def run_limited(arguments: list[str], limit_bytes: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convnet", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limited(limit_bytes),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def test_a_fetch_past_the_file_size_limit_leaves_nothing(mnist_dir, tmp_path):
    cache = tmp_path / "cache"
    result = run_limited(
        ["data", "fetch", "mnist", "--data-dir", str(cache), "--source", str(mnist_dir / "mnist")],
        limit_bytes=1_000_000,
    )
    assert_clean_refusal(
        result.returncode,
        result.stderr,
        "Cannot write",
        "file-size limit",
        "train-images-idx3-ubyte",
    )
    assert not (cache / "mnist").exists()  # no partial data set, no empty folder
    # …and once the limit is gone the same command fills the cache.
    assert (
        main(
            [
                "data",
                "fetch",
                "mnist",
                "--data-dir",
                str(cache),
                "--source",
                str(mnist_dir / "mnist"),
            ]
        )
        == 0
    )
    assert len(list((cache / "mnist").iterdir())) == 4


def test_training_past_the_file_size_limit_says_so(mnist_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_limited([*TRAIN, "--out", str(run_dir)], limit_bytes=100_000)  # lenet5: 250 kB
    assert_clean_refusal(
        result.returncode,
        result.stderr,
        str(run_dir),
        "file-size limit",
        "No checkpoint had been written yet",
    )
    assert not (run_dir / "model.safetensors").exists()
    assert not list(run_dir.glob(f".*{files.PARTIAL_SUFFIX}"))  # no half-written file


def test_a_disk_that_fills_up_keeps_the_last_checkpoint_and_resumes_exactly(
    mnist_dir, tmp_path, monkeypatch, capsys
):
    straight = tmp_path / "straight"
    assert main([*TRAIN, "--out", str(straight), "--no-report"]) == 0
    run_dir = tmp_path / "run"
    real_replace, checkpoints = os.replace, []

    def replace(source, target, *args, **kwargs):
        if Path(target).name == "checkpoint.safetensors":
            checkpoints.append(target)
            if len(checkpoints) == 2:  # the end of epoch 2: the disk is full now
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(files.os, "replace", replace)
    code = main([*TRAIN, "--out", str(run_dir)])
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert_clean_refusal(
        code, capsys.readouterr().err, "no space is left", f"convnet train --resume {run_dir}"
    )
    # the checkpoint of epoch 1 is whole, and nothing half-written is left beside it
    model = get_model("lenet5")
    optimizer = torch.optim.SGD(parameter_groups(model, 0.0), lr=0.1, momentum=0.9)
    assert load_checkpoint(run_dir / "checkpoint.safetensors", model, optimizer).epoch == 1
    assert not list(run_dir.glob(f".*{files.PARTIAL_SUFFIX}"))
    assert main(["train", "--resume", str(run_dir), "--no-report"]) == 0
    expected, actual = (load_file(path / "model.safetensors") for path in (straight, run_dir))
    assert all(torch.equal(expected[name], actual[name]) for name in expected)


@pytest.mark.parametrize(
    "number, cause",
    [
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission is denied"),
        (errno.EIO, "input/output error"),
    ],
)
def test_an_unwritable_output_is_refused_before_training(
    number, cause, mnist_dir, tmp_path, monkeypatch, capsys
):
    def refuse(*args, **kwargs):
        raise OSError(number, os.strerror(number), str(tmp_path / "run"))

    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    code = main([*TRAIN, "--out", str(tmp_path / "run")])
    assert_clean_refusal(code, capsys.readouterr().err, str(tmp_path / "run"), cause)
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_an_early_check_refuses_a_folder_without_room(tmp_path, monkeypatch):
    class Usage:
        free = 10_000

    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(files.WriteFailed, match="MiB are free there"):
        files.ensure_writable(tmp_path, 5 * 2**20, "this run")


def test_written_files_get_the_usual_permissions(tmp_path):
    import os

    from convnet.files import atomic_write_text

    atomic_write_text(tmp_path / "x.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "x.json").stat().st_mode & 0o777 == 0o666 & ~umask
