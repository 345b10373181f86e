"""The weights reader, loader and writer: containers and wrapper prefixes, refusal of files
that would run code, and byte-identical files (fine-tuning with a fresh classifier:
test_weight_fit.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import load_file

from convnet.cli import main
from convnet.engine import checkpoint, weight_files
from convnet.engine.weight_files import (
    WEIGHT_NAME,
    hub_weights,
    read_state_file,
    safetensors_bytes,
)
from convnet.engine.weight_fit import load_weights
from convnet.errors import UserError
from convnet.models import get_model
from tests.helpers.cli import assert_user_error, run_in_process
from tests.helpers.models import assert_same_tensors, seeded

# --- writing: the format, and the same bytes in any process ----------------------------


def test_written_bytes_load_back_equal_for_every_kind_of_tensor():
    tensors = {
        "wide": torch.randn(2, 3, dtype=torch.float64).t(),  # not contiguous
        "count": torch.arange(5),
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(1.5),
        "half": torch.randn(3).half(),
        "brain": torch.randn(2, 2).bfloat16(),
        "small": torch.tensor([1, -2], dtype=torch.int8),
        "mask": torch.tensor([True, False, True]),
    }
    data = safetensors_bytes(tensors, {"b": "2", "a": "é → 1"})
    loaded = load_safetensors_bytes(data)
    assert sorted(loaded) == sorted(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype and torch.equal(loaded[name], tensor), name
    header_length = int.from_bytes(data[:8], "little")
    assert header_length % 8 == 0
    header = json.loads(data[8 : 8 + header_length])
    assert list(header["__metadata__"].items()) == [("a", "é → 1"), ("b", "2")]
    for name, tensor in tensors.items():  # every tensor aligned to its element size
        assert header[name]["data_offsets"][0] % tensor.element_size() == 0, name
    assert safetensors_bytes(dict(reversed(tensors.items())), {"a": "é → 1", "b": "2"}) == data


def test_writer_refuses_what_safetensors_cannot_hold():
    with pytest.raises(ValueError, match="strings to strings"):
        safetensors_bytes({"x": torch.zeros(1)}, {"epoch": 3})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not a tensor"):
        safetensors_bytes({"x": [1.0]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="complex64"):
        safetensors_bytes({"x": torch.zeros(1, dtype=torch.complex64)})


WRITER = """
import sys
from pathlib import Path
import torch
from convnet.engine.checkpoint import TrainState, save_checkpoint, save_weights
from convnet.models import get_model

out = Path(sys.argv[1])
torch.manual_seed(0)
model = get_model("lenet5", num_classes=10)
optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
model(torch.randn(4, 1, 32, 32)).square().mean().backward()
optimizer.step()
metadata = {f"key{index}": f"value {index}" for index in range(8)}
save_weights(out / "model.safetensors", model, metadata)
save_checkpoint(out / "checkpoint.safetensors", model, optimizer,
                TrainState(epoch=1, batch=0, history=[{"loss": 0.5}]))
"""


def test_same_weights_give_the_same_bytes_in_two_processes(tmp_path):
    """safetensors' own writer orders metadata by a per-process random hash; ours may not."""
    outputs = [tmp_path / "first", tmp_path / "second"]
    processes = []
    for seed, out in zip(("1", "2"), outputs, strict=True):
        out.mkdir()
        environment = {**os.environ, "PYTHONHASHSEED": seed}
        processes.append(
            subprocess.Popen([sys.executable, "-c", WRITER, str(out)], env=environment)
        )
    assert [process.wait(timeout=120) for process in processes] == [0, 0]
    for name in ("model.safetensors", "checkpoint.safetensors"):
        first, second = ((out / name).read_bytes() for out in outputs)
        assert len(first) > 200_000 and first == second, name
    tensors, metadata = read_state_file(outputs[0] / "model.safetensors")
    assert metadata == {f"key{index}": f"value {index}" for index in range(8)}
    assert tensors["head.output.weight"].shape == (10, 84)
    model = get_model("lenet5", num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = checkpoint.load_checkpoint(outputs[1] / "checkpoint.safetensors", model, optimizer)
    assert state.history == [{"loss": 0.5}]
    assert torch.equal(model.head.output.weight, tensors["head.output.weight"])


# --- reading: containers, prefixes, refusals --------------------------------------------

CONTAINERS = {
    "bare": lambda state: state,
    "model": lambda state: {"model": state, "optimizer": {"lr": 0.1}, "epoch": 3},
    "state_dict": lambda state: {"state_dict": state, "epoch": 3},
    "model_state_dict": lambda state: {"model_state_dict": state, "best": 0.9},
    "model/state_dict": lambda state: {"model": {"state_dict": state, "step": 7}},
}
PREFIXES = ["", "module.", "_orig_mod.", "_orig_mod.module.", "module._orig_mod."]


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_containers_and_wrapper_prefixes_load_the_original_tensors(tmp_path, container, prefix):
    original = seeded("lenet5", 10).state_dict()
    wrapped = {prefix + key: value for key, value in original.items()}
    path = tmp_path / "weights.pt"
    torch.save(CONTAINERS[container](wrapped), path)
    tensors, metadata = read_state_file(path)
    assert metadata == {}
    assert_same_tensors(tensors, original)
    model = get_model("lenet5", num_classes=10)
    load_weights(model, path)
    assert_same_tensors(model.state_dict(), original)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod."])
def test_prefixes_are_stripped_from_safetensors_files_too(tmp_path, prefix):
    original = seeded("mlp_60k", 10).state_dict()
    path = tmp_path / "weights.safetensors"
    path.write_bytes(safetensors_bytes({prefix + k: v for k, v in original.items()}, {"a": "1"}))
    tensors, metadata = read_state_file(path)
    assert metadata == {"a": "1"}
    assert_same_tensors(tensors, original)


def test_a_prefix_only_some_keys_share_is_kept():
    tensors = {"module.a": torch.zeros(1), "b": torch.ones(1)}
    assert weight_files.strip_wrapper_prefixes(tensors) == tensors


class Harmless:
    """A custom class: a plain unpickler would import and build it."""

    def __init__(self) -> None:
        self.value = 1


class RunsCode:
    """Unpickling this runs code (here: creates a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",)


@pytest.mark.parametrize("payload", ["custom class", "code"])
def test_files_that_would_run_code_are_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "ran"
    extra = Harmless() if payload == "custom class" else RunsCode(marker)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "extra": extra}, path)
    with pytest.raises(UserError, match="refusing to load it") as error:
        read_state_file(path)
    assert "nothing in it was run" in str(error.value)
    assert not marker.exists()
    with pytest.raises(UserError, match="refusing"):
        load_weights(get_model("lenet5"), path)
    assert not marker.exists()
    if payload == "code":  # the file is live: its pickle calls builtins.exec (read, not run)
        import pickletools
        import zipfile

        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            pickled = archive.read(name)
        imported = [
            argument
            for opcode, argument, _ in pickletools.genops(pickled)
            if opcode.name == "GLOBAL"
        ]
        assert "__builtin__ exec" in imported


@pytest.mark.parametrize(
    "content", [[torch.zeros(1)], {"epoch": 3}, {}, {"model": {"w": "not a tensor"}}]
)
def test_files_without_a_state_dict_are_refused(tmp_path, content):
    path = tmp_path / "weights.pt"
    torch.save(content, path)
    with pytest.raises(UserError, match="holds no dictionary of tensors"):
        read_state_file(path)


def test_damaged_safetensors_and_missing_files_are_user_errors(tmp_path):
    path = tmp_path / "model.safetensors"
    checkpoint.save_weights(path, get_model("mlp_60k"))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(UserError, match="damaged or truncated safetensors"):
        read_state_file(path)
    with pytest.raises(UserError, match="does not exist"):
        read_state_file(tmp_path / "absent.safetensors")
    with pytest.raises(UserError, match="is a folder, not a weights file"):
        read_state_file(tmp_path)


def _cut_pytorch_file(path: Path) -> bytes:
    torch.save({"weight": torch.randn(100, 100)}, path)
    return path.read_bytes()[:5000]


@pytest.mark.parametrize(
    "content, said",
    [
        (b"this is not a weights file\n", "neither a safetensors file nor a PyTorch file"),
        (b"hi", "holds 2 bytes, too few for any weights file"),
        (_cut_pytorch_file, "It looks cut short"),
    ],
    ids=["text (a traceback: IndexError)", "2 bytes", "cut short"],
)
def test_files_that_are_not_weights_are_told_apart(content, said, tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(content(tmp_path / "whole.pt") if callable(content) else content)
    with pytest.raises(UserError, match=said):
        read_state_file(path)


def test_a_training_checkpoint_given_as_weights_names_the_weights_file(tmp_path, capfd):
    """A run's checkpoint.safetensors holds the model under "model." beside the optimizer's
    state: it was refused as weights "saved for another model"."""
    model = get_model("lenet5")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "checkpoint.safetensors"
    checkpoint.save_checkpoint(path, model, optimizer, checkpoint.TrainState())
    assert checkpoint.load_checkpoint(path, model, optimizer).epoch == 0  # resumable as ever
    with pytest.raises(UserError, match="is a training checkpoint"):
        load_weights(get_model("lenet5"), path)
    image = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 255, np.uint8)).save(image)
    result = run_in_process(capfd, "predict", "lenet5", "--weights", str(path), str(image))
    assert_user_error(result, "give the model.safetensors beside it")


# --- torchvision's weights by name -------------------------------------------------------


def test_hub_weights_finds_cached_files_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert WEIGHT_NAME.match("IMAGENET1K_V1") and not WEIGHT_NAME.match("weights.pth")
    with pytest.raises(UserError, match="lenet5 has no torchvision weights"):
        hub_weights("lenet5", "IMAGENET1K_V1")
    with pytest.raises(UserError, match="no weights 'IMAGENET1K_V9' for resnet18"):
        hub_weights("resnet18", "IMAGENET1K_V9")
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(UserError, match="downloads only when asked") as error:
        hub_weights("resnet18", "IMAGENET1K_V1")
    assert str(cached) in str(error.value)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    path, class_names = hub_weights("resnet18", "IMAGENET1K_V1")
    assert path == cached and len(class_names) == 1000 and class_names[0] == "tench"


def test_a_damaged_weights_file_gets_no_advice_to_run_its_code(tmp_path, capfd):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    result = run_in_process(capfd, "evaluate", "lenet5", "--weights", str(damaged))
    assert_user_error(result, "refusing to load it", "PyTorch's restricted loader says")
    assert "weights_only` set to `False`" not in result.stderr


def test_pickle_weights_that_run_code_are_refused(tmp_path, capfd):
    import pickle

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"weight": Exploit()}))
    image = tmp_path / "x.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(image)
    result = run_in_process(capfd, "predict", "lenet5", "--weights", str(bad), str(image))
    assert_user_error(result, "refusing to load")
    assert not marker.exists()


def test_fine_tuning_to_another_class_count(folders, tmp_path, capsys, one_thread):
    """A 1000-class torchvision-layout resnet18 file starts a 5-class run: every tensor but
    the classifier comes from the file, the classifier starts afresh, one line says so."""
    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model

    torch.manual_seed(5)
    pretrained = get_model("resnet18", num_classes=1000)
    weights = tmp_path / "imagenet.safetensors"
    save_weights(weights, pretrained)
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "resnet18",
            "--data",
            str(folders),
            "--weights",
            str(weights),
            "--image-size",
            "32",
            "--epochs",
            "1",
            "--lr",
            "1e-9",
            "--precision",
            "fp32",
            "--workers",
            "0",
            "--out",
            str(run_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "classifier fc (1000 → 5 classes)" in err
    tuned = load_file(run_dir / "model.safetensors")
    original = pretrained.state_dict()
    assert tuned["fc.weight"].shape == (5, 512)
    assert torch.allclose(tuned["conv1.weight"], original["conv1.weight"], atol=1e-6)
    assert not any(
        key.startswith("fc.") and tuned[key].shape == original[key].shape for key in tuned
    )


def test_googlenet_loads_torchvisions_file_with_auxiliary_heads(tmp_path):
    import torchvision

    from convnet.engine.weight_fit import load_weights

    original = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    path = tmp_path / "googlenet.pth"
    torch.save(original.state_dict(), path)
    model = get_model("googlenet", num_classes=1000)
    load_weights(model, path)
    assert model.transform_input  # the ported TensorFlow weights expect it
    torch.testing.assert_close(model.fc.weight, original.fc.weight)
