"""When the machine fails, not the user: a full disk, a file-size limit, a read-only or
forbidden path, an I/O error and memory running out each end with exit status 2 and one
paragraph naming the path, the cause and what to do — never a traceback — and nothing lost:
the last checkpoint stays whole and the run resumes bit-exactly; a failed fetch leaves no
partial data set and no empty folder; the server answers the failed request with a JSON
error and goes on serving.

Faults are injected portably: a child process with a file-size limit (RLIMIT_FSIZE, with
SIGXFSZ ignored so the write fails with EFBIG instead of killing it) for a disk that fills
up, and errors raised at the shared write mechanism (`convnet.files`) for the rest.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import convnet.files as files
from convnet.cli import main
from convnet.engine.checkpoint import load_checkpoint
from convnet.engine.recipe import parameter_groups
from convnet.models import get_model, get_model_spec

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


def assert_clean_refusal(code: int, stderr: str, *phrases: str) -> None:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    assert code == 2, stderr
    assert "Traceback" not in stderr and message.startswith("convnet: error: "), stderr
    for phrase in phrases:
        assert phrase in message, message


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
    assert main([*TRAIN, "--out", str(straight)]) == 0
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
    assert main(["train", "--resume", str(run_dir)]) == 0
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


def test_a_batch_too_large_for_memory_names_the_batch_size(
    mnist_dir, tmp_path, monkeypatch, capsys
):
    import convnet.engine.recipe as recipe_module

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


def test_evaluation_halves_a_batch_that_does_not_fit(mnist_dir):
    """The same scores as a batch that fits, and a note that says what happened."""
    from convnet.data.sources import TensorSource
    from convnet.engine.evaluate import evaluate

    spec = get_model_spec("lenet5")
    source = TensorSource.from_dataset(
        "mnist", spec.input_size, spec.normalization, train=False, test_subset=300
    )
    torch.manual_seed(0)
    model = get_model("lenet5").eval()

    class SmallMemory(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            if len(images) > 40:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return self.inner(images)

    notes: list[str] = []
    cpu = torch.device("cpu")
    halved = evaluate(SmallMemory(), source, cpu, "fp32", batch_size=300, log=notes.append)
    reference = evaluate(model, source, cpu, "fp32", batch_size=300)
    assert halved.result["top1_error"] == reference.result["top1_error"]
    assert torch.allclose(halved.logits, reference.logits, atol=1e-5)
    assert len(notes) == 1 and "batches of 37" in notes[0]  # 300 → 150 → 75 → 37


def test_the_server_answers_a_failed_request_and_goes_on(monkeypatch):
    import io

    import numpy as np
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    import convnet.serve.app as app_module
    from convnet.engine.run import LoadedModel
    from convnet.serve.app import create_app
    from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels

    served = [
        ServedModel(
            role,
            LoadedModel(
                name, get_model_spec(name), get_model(name).eval(), tuple(str(i) for i in range(10))
            ),
            "untrained",
        )
        for role, name in ((CNN, "lenet5"), (ORDINARY, "mlp"))
    ]
    client = TestClient(create_app(ServedModels(*served)))
    buffer = io.BytesIO()
    Image.fromarray((np.eye(28) * 255).astype(np.uint8)).save(buffer, format="PNG")
    png = {"content": buffer.getvalue(), "headers": {"Content-Type": "image/png"}}
    real = app_module.load_digit
    for fault, status in ((MemoryError(), 503), (OSError(errno.ENOSPC, "No space left"), 503)):

        def fail(*args, fault=fault, **kwargs):
            raise fault

        monkeypatch.setattr(app_module, "load_digit", fail)
        answer = client.post("/api/predict", **png)
        assert answer.status_code == status and "error" in answer.json(), answer.text
        monkeypatch.setattr(app_module, "load_digit", real)
        assert client.post("/api/predict", **png).status_code == 200  # still serving
