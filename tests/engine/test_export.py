"""Exported files (convnet/engine/export.py): the ONNX file run in onnxruntime and the
TorchScript file run in a fresh process give PyTorch's logits (max abs difference ≤ 1e-4,
fp32) at a batch size other than the one the graph was recorded with; the file is the plain
model; a model the exporter cannot express is refused. The command is tests/commands/'s."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from convnet.engine.export import INPUT_NAME, METADATA_FILE, TRACE_BATCH, export_model
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec, list_models, shapes_model

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4
BATCH = 8
# One model for each layer of ours with a forward pass of its own (the test below checks that
# none is left out; mlp, alexnet_mini, vgg_mini and nin_mini hold only layers these hold) and
# one ImageNet-size family at its small input. The other ImageNet-size families export the
# same way but weigh hundreds of megabytes, too slow for the suite.
EXPORTED = ("lenet5", "lenet5_1998", "googlenet_mini", "resnet_mini", "resnet18")


def own_layers(model: torch.nn.Module) -> set[str]:
    """The classes of `model`'s modules that are convnet's and define their own forward."""
    return {
        type(module).__name__
        for module in model.modules()
        if type(module).__module__.startswith("convnet.") and "forward" in vars(type(module))
    }


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


def test_every_layer_of_ours_is_in_an_exported_model():
    exported = set().union(*(own_layers(get_model(name)) for name in EXPORTED))
    for name in list_models():
        assert own_layers(shapes_model(name)) <= exported, name


def test_a_model_the_exporter_cannot_express_is_refused(tmp_path):
    from torch import nn

    class Unexportable(nn.Module):
        def forward(self, x):  # a branch on the input's values: no one graph to record
            return x.flatten(1) * 2 if x.sum() > 0 else x.flatten(1)

    with pytest.raises(UserError, match="cannot be exported to onnx: .*data-dependent"):
        export_model(Unexportable(), (1, 4, 4), "onnx", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
