"""`convnet export` of a trained run, and its mistakes."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

import convnet.files as files
from convnet.cli import main
from convnet.engine.export import INPUT_NAME
from tests.helpers.cli import run_in_process

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4
BATCH = 8


def run_onnx(path, inputs: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {INPUT_NAME: inputs.numpy()})[0])


def test_export_a_trained_run(trained_run, mnist_test, tmp_path, capfd):
    from convnet.data.transforms import normalize, to_model_input
    from convnet.engine.run import Run

    run_dir, _ = trained_run
    out = tmp_path / "exports" / "lenet5.onnx"
    document = json.loads(
        run_in_process(
            capfd, "export", str(run_dir), "--out", str(out), "--json", check=True
        ).stdout
    )
    assert document["out"] == str(out) and document["bytes"] == out.stat().st_size
    assert document["classes"] == [str(digit) for digit in range(10)]
    metadata = {entry.key: json.loads(entry.value) for entry in onnx.load(str(out)).metadata_props}
    assert metadata["input_size"] == [1, 32, 32] and metadata["model"] == "lenet5"

    loaded = Run(run_dir).load()
    mean, std = metadata["normalization"]["mean"][0], metadata["normalization"]["std"][0]
    inputs = normalize(to_model_input(mnist_test.images[:BATCH], (1, 32, 32)), mean, std)
    with torch.no_grad():
        reference = loaded.model(inputs)
    assert (run_onnx(out, inputs) - reference).abs().max() <= TOLERANCE
    assert (run_onnx(out, inputs).argmax(1) == mnist_test.labels[:BATCH]).float().mean() >= 0.75

    script = tmp_path / "lenet5.pt"
    run_in_process(
        capfd,
        "export",
        "lenet5",
        "--weights",
        str(run_dir / "model.safetensors"),
        "--format",
        "torchscript",
        "--out",
        str(script),
        check=True,
    )
    assert (torch.jit.load(str(script))(inputs) - reference).abs().max() <= TOLERANCE


def assert_refused(result, *phrases):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_export_mistakes_exit_2(tmp_path, capfd):
    out = str(tmp_path / "model.onnx")
    assert_refused(
        run_in_process(capfd, "export", "lenet5", "--format", "tflite", "--out", out), "tflite"
    )
    assert_refused(
        run_in_process(capfd, "export", str(tmp_path / "nowhere"), "--out", out), "does not exist"
    )
    assert_refused(run_in_process(capfd, "export", "lenet5", "--out", out), "--weights")
    assert_refused(
        run_in_process(capfd, "export", "lenet5", "--weights", "IMAGENET1K_V1", "--out", out)
    )
    (tmp_path / "file").write_text("")
    assert_refused(
        run_in_process(capfd, "export", "lenet5", "--out", str(tmp_path / "file" / "x.onnx")),
        "is a file",
    )
    assert_refused(run_in_process(capfd, "export", "lenet5", "--out", str(tmp_path)), "is a folder")
    assert not (tmp_path / "model.onnx").exists()


def test_an_unwritable_out_is_refused(trained_run, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    code = main(["export", str(trained_run[0]), "--out", str(tmp_path / "model.onnx")])
    assert code == 2 and "read-only" in capsys.readouterr().err
    assert not (tmp_path / "model.onnx").exists()
