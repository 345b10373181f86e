"""`convnet export`: the ONNX file run in onnxruntime and the TorchScript file run in a fresh
process give PyTorch's logits (max abs difference ≤ 1e-4, fp32) at a batch size other than
the one the graph was recorded with; the file is the plain model; mistakes exit 2."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import run_cli

import convnet.files as files
from convnet.cli import main
from convnet.engine.export import INPUT_NAME, METADATA_FILE, TRACE_BATCH, export_model
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4
BATCH = 8
# Every compact model (each of our fast-path layers is in one of them) and one ImageNet-size
# family at its small input. The other ImageNet-size families export the same way but weigh
# hundreds of megabytes, too slow for the suite.
EXPORTED = (
    "lenet5",
    "lenet5_1998",
    "mlp",
    "mlp_60k",
    "alexnet_mini",
    "vgg_mini",
    "nin_mini",
    "googlenet_mini",
    "resnet_mini",
    "resnet18",
)

# Run in a fresh interpreter: load each TorchScript file and score its inputs.
TORCHSCRIPT_RUNNER = """
import json, sys, torch
for model_file, inputs_file, outputs_file in json.loads(sys.argv[1]):
    model = torch.jit.load(model_file)
    with torch.no_grad():
        torch.save(model(torch.load(inputs_file, weights_only=True)), outputs_file)
"""


def run_onnx(path, inputs: torch.Tensor) -> torch.Tensor:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {INPUT_NAME: inputs.numpy()})[0])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each model of EXPORTED with fresh weights, exported both ways, with 8 random inputs
    and PyTorch's logits for them (the model itself, fast-path layers and all)."""
    folder = tmp_path_factory.mktemp("exported")
    found = {}
    for name in EXPORTED:
        torch.manual_seed(0)
        model = get_model(name, num_classes=7).eval()
        size = get_model_spec(name).quick_input_size
        inputs = torch.randn(BATCH, *size)
        with torch.no_grad():
            reference = model(inputs)
        paths = {fmt: folder / f"{name}.{fmt}" for fmt in ("onnx", "torchscript")}
        for fmt, path in paths.items():
            assert export_model(model, size, fmt, path, {"model": name}) == path.stat().st_size
        torch.save(inputs, folder / f"{name}.inputs.pt")
        found[name] = (paths, inputs, reference)
    return folder, found


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPORTED)
def test_onnx_runs_in_onnxruntime_like_pytorch(exported, name):
    _, found = exported
    paths, inputs, reference = found[name]
    assert BATCH != TRACE_BATCH and reference.abs().max() > 1e-3  # a meaningful comparison
    outputs = run_onnx(paths["onnx"], inputs)
    assert outputs.shape == reference.shape
    assert (outputs - reference).abs().max() <= TOLERANCE
    single = run_onnx(paths["onnx"], inputs[:1])  # the batch axis is dynamic both ways
    assert (single - reference[:1]).abs().max() <= TOLERANCE


@pytest.mark.slow
def test_torchscript_runs_in_a_fresh_process_like_pytorch(exported):
    folder, found = exported
    jobs = [
        (
            str(paths["torchscript"]),
            str(folder / f"{name}.inputs.pt"),
            str(folder / f"{name}.outputs.pt"),
        )
        for name, (paths, _, _) in found.items()
    ]
    subprocess.run(
        [sys.executable, "-c", TORCHSCRIPT_RUNNER, json.dumps(jobs)],
        check=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    for name, (_, _, reference) in found.items():
        outputs = torch.load(folder / f"{name}.outputs.pt", weights_only=True)
        assert outputs.shape == reference.shape, name
        assert (outputs - reference).abs().max() <= TOLERANCE, name


@pytest.mark.slow
def test_the_file_is_the_plain_model(exported):
    """LeNet-5's C5 runs as a matrix product in PyTorch; the file has it as the convolution
    it is: three Conv nodes, a batch axis without a fixed size."""
    _, found = exported
    graph = onnx.load(str(found["lenet5"][0]["onnx"])).graph
    assert [node.op_type for node in graph.node].count("Conv") == 3
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.HasField("dim_value")
    archive = torch.jit.load(
        str(found["lenet5"][0]["torchscript"]), _extra_files={METADATA_FILE: ""}
    )
    assert archive is not None


def test_export_a_trained_run(trained_run, mnist_test, tmp_path):
    from convnet.data.transforms import normalize, to_model_input
    from convnet.engine.run import Run

    run_dir, _ = trained_run
    out = tmp_path / "exports" / "lenet5.onnx"
    document = json.loads(
        run_cli("export", str(run_dir), "--out", str(out), "--json", check=True).stdout
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
    run_cli(
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


def test_export_mistakes_exit_2(tmp_path):
    out = str(tmp_path / "model.onnx")
    assert_refused(run_cli("export", "lenet5", "--format", "tflite", "--out", out), "tflite")
    assert_refused(run_cli("export", str(tmp_path / "nowhere"), "--out", out), "does not exist")
    assert_refused(run_cli("export", "lenet5", "--out", out), "--weights")
    assert_refused(run_cli("export", "lenet5", "--weights", "IMAGENET1K_V1", "--out", out))
    (tmp_path / "file").write_text("")
    assert_refused(
        run_cli("export", "lenet5", "--out", str(tmp_path / "file" / "x.onnx")), "is a file"
    )
    assert_refused(run_cli("export", "lenet5", "--out", str(tmp_path)), "is a folder")
    assert not (tmp_path / "model.onnx").exists()


def test_an_unwritable_out_is_refused(trained_run, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path))

    monkeypatch.setattr(files.tempfile, "NamedTemporaryFile", refuse)
    monkeypatch.setattr(files.tempfile, "mkstemp", refuse)
    code = main(["export", str(trained_run[0]), "--out", str(tmp_path / "model.onnx")])
    assert code == 2 and "read-only" in capsys.readouterr().err
    assert not (tmp_path / "model.onnx").exists()


def test_a_model_the_exporter_cannot_express_is_refused(tmp_path):
    from torch import nn

    class Unexportable(nn.Module):
        def forward(self, x):  # a branch on the input's values: no one graph to record
            return x.flatten(1) * 2 if x.sum() > 0 else x.flatten(1)

    with pytest.raises(UserError, match="cannot be exported to onnx: .*data-dependent"):
        export_model(Unexportable(), (1, 4, 4), "onnx", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
