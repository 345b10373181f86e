"""What the one loader (convnet/engine/weight_fit.py) takes: weights that are numbers and of
the model's kind, everywhere weights are loaded (a file, a run, a checkpoint); one prefix on
every key removed and said; a misfit explained by what it is; fine-tuning with a fresh
classifier where the class counts differ."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.engine import checkpoint
from convnet.engine.weight_files import safetensors_bytes
from convnet.engine.weight_fit import find_classifier, load_weights, strip_to_fit
from convnet.errors import UserError
from convnet.models import get_model, list_models
from tests.helpers.cli import refused, run_in_process
from tests.helpers.models import assert_same_tensors, seeded


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


# --- fine-tuning: a fresh classifier where the class counts differ -------------------------


def fine_tune(tmp_path, name: str, classifier: str, file_classes: int, model_classes: int):
    """Save a `file_classes` file of `name`, load it into a `model_classes` model with
    replace_classifier; return the file's tensors (read back after the load, so that
    AlexNet's 240 MB are not held twice meanwhile), the model, its classifier before, the
    log lines and the file."""
    path = tmp_path / f"{name}-{file_classes}.pth"
    torch.save(seeded(name, file_classes).state_dict(), path)
    torch.manual_seed(1)
    model = get_model(name, num_classes=model_classes)
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(classifier)}
    lines: list[str] = []
    load_weights(model, path, replace_classifier=True, log=lines.append)
    return torch.load(path, weights_only=True), model, before, lines, path


@pytest.mark.parametrize(
    "name, classifier, file_classes",
    [
        ("resnet18", "fc", 1000),
        ("alexnet", "classifier.6", 1000),
        ("lenet5", "head.output", 10),
        ("lenet5_1998", "head.output", 10),  # an RBF layer: a buffer, no parameters
        ("nin_mini", "features.6.2", 10),  # class maps from a 1×1 convolution
    ],
)
def test_fine_tuning_keeps_a_fresh_classifier_and_loads_the_rest(
    tmp_path, name, classifier, file_classes
):
    source, model, before, lines, path = fine_tune(tmp_path, name, classifier, file_classes, 3)
    state = model.state_dict()
    replaced = sorted(before)
    assert replaced and all(key.rpartition(".")[0] == classifier for key in replaced)
    for key, tensor in state.items():
        if key in before:
            assert tensor.shape[0] == 3 and torch.equal(tensor, before[key]), key
        else:
            assert torch.equal(tensor, source[key]), key
    assert lines == [
        f"Loaded {len(state) - len(replaced)} of {len(state)} tensors from {path}; the "
        f"classifier {classifier} ({file_classes} → 3 classes) starts from fresh weights."
    ]
    del source, model, state  # AlexNet's 240 MB each, before another is built
    with pytest.raises(UserError, match=rf"wrong shape {classifier}\.\w+ \({file_classes},"):
        load_weights(get_model(name, num_classes=3), path)  # only when asked to


def test_fine_tuning_googlenet_from_torchvisions_file_with_auxiliary_heads(tmp_path):
    import torchvision

    original = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    path = tmp_path / "googlenet.pth"
    torch.save(original.state_dict(), path)
    model = get_model("googlenet", num_classes=3)
    lines: list[str] = []
    load_weights(model, path, replace_classifier=True, log=lines.append)
    assert model.transform_input  # the hook still ran: aux heads dropped, input re-normalized
    assert model.fc.weight.shape == (3, 1024)
    assert torch.equal(model.conv1.conv.weight, original.conv1.conv.weight)
    assert len(lines) == 1 and "classifier fc (1000 → 3 classes)" in lines[0]


def test_a_file_of_the_same_class_count_loads_silently(tmp_path):
    source = seeded("lenet5", 3)
    path = tmp_path / "model.safetensors"
    checkpoint.save_weights(path, source, {"epoch": "2"})
    lines: list[str] = []
    model = get_model("lenet5", num_classes=3)
    assert load_weights(model, path, replace_classifier=True, log=lines.append) == {"epoch": "2"}
    assert lines == []
    assert_same_tensors(model.state_dict(), source.state_dict())


def disagreeing_files(tmp_path) -> dict[str, Path]:
    """lenet5 files that differ from a 3-class lenet5 in more than the class count."""
    ten = seeded("lenet5", 10).state_dict()
    cases = {
        "another input": seeded("lenet5", 10, in_channels=3).state_dict(),
        "missing key": {k: v for k, v in ten.items() if k != "features.c1.bias"},
        "extra key": {**ten, "head.extra": torch.zeros(3)},
        "classifier input": {**ten, "head.output.weight": torch.zeros(10, 85)},
        "classifier rank": {**ten, "head.output.weight": torch.zeros(10, 84, 1)},
        "classifier counts": {**ten, "head.output.bias": torch.zeros(11)},
        "another model": seeded("mlp_60k", 10).state_dict(),
    }
    paths = {}
    for case, tensors in cases.items():
        paths[case] = tmp_path / f"{case.replace(' ', '-')}.pth"
        torch.save(tensors, paths[case])
    return paths


EXPECTED_COMPLAINT = {
    "another input": r"wrong shape features\.c1\.weight \(6, 3, 5, 5\) vs \(6, 1, 5, 5\)",
    "missing key": r"missing features\.c1\.bias",
    "extra key": r"unexpected head\.extra",
    "classifier input": r"wrong shape head\.output\.weight \(10, 85\) vs \(3, 84\)",
    "classifier rank": r"wrong shape head\.output\.weight \(10, 84, 1\)",
    "classifier counts": r"head\.output\.bias \(11,\) vs \(3,\)",
    "another model": r"missing features\.c1\.bias.*unexpected features\.fc1\.bias",
}


def test_files_that_disagree_elsewhere_are_refused_even_when_fine_tuning(tmp_path):
    for case, path in disagreeing_files(tmp_path).items():
        model = get_model("lenet5", num_classes=3)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        with pytest.raises(UserError, match=EXPECTED_COMPLAINT[case]) as error:
            load_weights(model, path, replace_classifier=True, log=pytest.fail)
        assert "does not fit this model" in str(error.value), case
        assert_same_tensors(model.state_dict(), before)  # nothing was loaded


def test_the_classifier_is_found_for_every_registered_model():
    """It is exactly the set of tensors whose shape follows the class count."""
    for name in list_models():
        try:
            with torch.device("meta"):  # shapes only: allocate and initialise nothing
                seven, eleven = (get_model(name, num_classes=n) for n in (7, 11))
        except NotImplementedError:  # an initialisation the meta device cannot run
            seven, eleven = (get_model(name, num_classes=n) for n in (7, 11))
        found = find_classifier(seven)
        assert found is not None, name
        left, right = seven.state_dict(), eleven.state_dict()
        follows = sorted(key for key in left if left[key].shape != right[key].shape)
        assert sorted(found[1]) == follows, name
        assert {left[key].shape[0] for key in follows} == {7}, name
