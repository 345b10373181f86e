"""What the one loader (convnet/engine/weight_fit.py) takes: weights that are numbers and of
the model's kind, everywhere weights are loaded (a file, a run, a checkpoint); one prefix on
every key removed and said; a misfit explained by what it is."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.engine.weight_files import safetensors_bytes
from convnet.engine.weight_fit import load_weights, strip_to_fit
from convnet.errors import UserError
from convnet.models import get_model
from tests.helpers.cli import refused, run_in_process


def lenet(classes: int = 10, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("lenet5", num_classes=classes, **options)


def written(path, tensors: dict) -> str:
    path.write_bytes(safetensors_bytes(tensors))
    return str(path)


@pytest.fixture
def digit(tmp_path) -> str:
    path = tmp_path / "seven.png"
    canvas = np.zeros((28, 28), dtype=np.uint8)
    canvas[5:7, 6:22] = 255
    canvas[7:23, 18:20] = 255
    Image.fromarray(canvas).save(path)
    return str(path)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_weights_that_are_not_numbers_are_refused_naming_the_tensor(value, tmp_path, digit, capsys):
    state = lenet().state_dict()
    state["features.c3.weight"][0, 0, 0, 0] = value
    path = written(tmp_path / "broken.safetensors", state)
    error = refused(
        capsys,
        ["predict", "lenet5", "--weights", path, digit],
        "holds weights that are not numbers: features.c3.weight",
    )
    assert ("1 NaN" if value != value else "1 infinite") in error
    refused(capsys, ["evaluate", "lenet5", "--weights", path], "features.c3.weight")


def test_integer_weights_are_refused_not_cast(tmp_path, digit, capsys):
    state = {key: value.round().to(torch.int32) for key, value in lenet().state_dict().items()}
    path = written(tmp_path / "integers.safetensors", state)
    refused(
        capsys,
        ["predict", "lenet5", "--weights", path, digit],
        "tensors of another kind than the model's",
        "features.c1.weight (torch.int32 for the model's torch.float32)",
    )


def test_a_runs_broken_weights_and_checkpoint_are_refused(trained_run, tmp_path, digit, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    from safetensors.torch import load_file

    state = load_file(run_dir / "model.safetensors")
    state["head.f6.bias"][:] = float("nan")
    (run_dir / "model.safetensors").write_bytes(safetensors_bytes(state))
    refused(capsys, ["predict", str(run_dir), digit], "head.f6.bias (84 NaN, 0 infinite)")
    refused(capsys, ["evaluate", str(run_dir), "--test-subset", "10"], "not numbers")
    checkpoint = load_file(run_dir / "checkpoint.safetensors")
    checkpoint["model.features.c1.weight"][0] = float("inf")
    from safetensors import safe_open

    with safe_open(run_dir / "checkpoint.safetensors", "pt") as handle:
        metadata = handle.metadata()
    (run_dir / "checkpoint.safetensors").write_bytes(safetensors_bytes(checkpoint, metadata))
    refused(
        capsys,
        ["train", "--resume", str(run_dir), "--epochs", "2"],
        "features.c1.weight (0 NaN, 25 infinite)",
    )


@pytest.mark.parametrize("prefix", ["model.", "net.", "backbone.", "model.net."])
def test_one_prefix_on_every_key_is_removed_and_said(prefix, tmp_path, digit, capfd):
    source = lenet()
    state = {prefix + key: value for key, value in source.state_dict().items()}
    path = tmp_path / "lightning.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    model = lenet()
    for parameter in model.parameters():
        parameter.data.zero_()
    said = []
    load_weights(model, path, log=said.append)
    assert said == [
        f"Loaded {path} without the prefix '{prefix}' that every one of its keys carried."
    ]
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    result = run_in_process(capfd, "predict", "lenet5", "--weights", str(path), digit)
    assert result.returncode == 0, result.stderr
    assert f"without the prefix '{prefix}'" in result.stderr


def test_a_prefix_that_does_not_strip_to_a_fit_is_kept():
    expected = lenet().state_dict()
    tensors = {"model." + key: value for key, value in list(expected.items())[:-1]}
    assert strip_to_fit(tensors, expected) == (tensors, "")
    features_only = {"features." + key: value for key, value in expected.items()}
    assert strip_to_fit(features_only, expected)[1] == ""  # a name of the model's own


@pytest.mark.parametrize(
    ("case", "hint"),
    [
        ("classes", "It was saved for 5 classes; this model has 10"),
        ("channels", "It was saved for 3-channel inputs; this model takes 1"),
        ("another model", "it was saved for another model"),
        ("prefix, another model", "Every key of the file starts with 'model.'"),
    ],
)
def test_the_hint_names_the_real_mismatch(case, hint, tmp_path):
    state = {
        "classes": lambda: lenet(5).state_dict(),
        "channels": lambda: lenet(in_channels=3).state_dict(),
        "another model": lambda: get_model("mlp", num_classes=10).state_dict(),
        "prefix, another model": lambda: {
            "model." + k: v for k, v in get_model("mlp", num_classes=10).state_dict().items()
        },
    }[case]()
    path = tmp_path / "other.safetensors"
    written(path, state)
    with pytest.raises(UserError, match="does not fit this model") as error:
        load_weights(lenet(), path)
    assert hint in str(error.value)
    assert "another model or class count?" not in str(error.value)
