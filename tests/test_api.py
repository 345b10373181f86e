"""The Python API (`import convnet`): its documented examples run, models listed and created
from files, and a module of the user's own trains through the one engine."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import convnet
from convnet.errors import UserError
from convnet.models import MODELS, get_model
from tests.helpers.cli import run_in_process

API_PAGE = Path(__file__).parent.parent / "docs" / "api.md"


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


def test_every_python_example_of_the_api_page_runs(mnist_dir, tmp_path, monkeypatch, capsys):
    blocks = python_blocks(API_PAGE.read_text())
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_api"}
    for number, block in enumerate(blocks, start=1):
        try:
            exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)
        except Exception as error:
            raise AssertionError(f"docs/api.md block {number} failed:\n{block}") from error
    printed = capsys.readouterr().out
    assert "['lenet5', 'lenet5_1998']" in printed
    assert "126720 " in printed  # the page's own arithmetic for SmallNet's MACs
    assert (tmp_path / "runs" / "lenet5-quick" / "model.safetensors").is_file()


def test_importing_convnet_imports_no_torch():
    code = "import sys, convnet; print('torch' in sys.modules, convnet.fit.__module__)"
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert output == ["False", "convnet.api"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*", sorted(MODELS)),
        ("lenet*", ["lenet5", "lenet5_1998"]),
        ("nothing*", []),
        ("resnet?8", ["resnet18"]),
        ("*_mini", sorted(n for n in MODELS if n.endswith("_mini"))),
    ],
)
def test_list_models_takes_wildcards(pattern, expected):
    assert convnet.list_models(pattern) == expected


def test_create_model_loads_a_file_and_takes_its_class_count_and_channels(tmp_path):
    torch.manual_seed(1)
    three = get_model("lenet5", num_classes=3)
    save_file(three.state_dict(), tmp_path / "three.safetensors")
    loaded = convnet.create_model("lenet5", weights=tmp_path / "three.safetensors")
    assert loaded(torch.zeros(1, 1, 32, 32)).shape == (1, 3)
    for key, value in three.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    fine_tuned = convnet.create_model(
        "lenet5", num_classes=5, weights=str(tmp_path / "three.safetensors"), log=lambda m: None
    )
    assert fine_tuned(torch.zeros(1, 1, 32, 32)).shape == (1, 5)
    assert torch.equal(fine_tuned.features.c1.weight, three.features.c1.weight)
    colour = get_model("lenet5", num_classes=5, in_channels=3)  # trained on image folders
    save_file(colour.state_dict(), tmp_path / "colour.safetensors")
    loaded = convnet.create_model("lenet5", weights=tmp_path / "colour.safetensors")
    assert loaded(torch.zeros(1, 3, 32, 32)).shape == (1, 5)
    assert torch.equal(loaded.features.c1.weight, colour.features.c1.weight)
    assert convnet.create_model("alexnet").classifier[-1].out_features == 1000
    with pytest.raises(UserError, match="Unknown model"):
        convnet.create_model("lenet6")
    with pytest.raises(UserError, match="does not exist"):
        convnet.create_model("lenet5", weights=tmp_path / "missing.safetensors")


def test_summary_of_a_module_of_ones_own_is_the_command_line_table(capfd):
    class Branchy(nn.Module):  # data-dependent control flow: torch.fx cannot trace it
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv1d(2, 4, 3)
            self.fc = nn.Linear(4 * 8, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x)
            if y.sum() > 0:
                y = -y
            return self.fc(y.flatten(1))

    table = convnet.summary(Branchy(), (2, 10))
    assert [layer.macs for layer in table.layers] == [4 * 8 * 2 * 3, 4 * 8 * 5]
    assert table.total["depth"] is None and "depth unknown" in str(table)
    assert str(table).splitlines()[0].split() == [
        "layer",
        "type",
        "output",
        "params",
        "connections",
        "MACs",
        "activ.",
        "KiB",
    ]
    with pytest.raises(UserError, match="cannot take input"):
        convnet.summary(Branchy(), (3, 10))
    printed = run_in_process(capfd, "summary", "lenet5", check=True).stdout
    assert str(convnet.summary("lenet5")) in printed


def tiny_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


@pytest.fixture(scope="module")
def own_run(mnist_dir, tmp_path_factory) -> tuple[Path, nn.Module, dict]:
    module = tiny_module()
    out = tmp_path_factory.mktemp("api") / "own"
    result = convnet.fit(
        module,
        dataset="mnist",
        epochs=1,
        train_subset=600,
        test_subset=300,
        out=out,
        name="tiny",
        threads=1,
        log=lambda m: None,
    )
    return out, module, result


def test_a_module_of_ones_own_trains_and_loads_back(own_run):
    out, module, result = own_run
    assert result["model"] == "tiny" and result["num_examples"] == 300
    config = json.loads((out / "config.json").read_text())
    assert config["custom_module"] == {
        "class": "torch.nn.modules.container.Sequential",
        "input_size": [1, 28, 28],
        "normalization": [0.0, 1.0],
    }
    with pytest.raises(UserError, match="module of your own"):
        convnet.load_run(out)
    loaded = convnet.load_run(out, module=tiny_module())
    for key, value in module.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value.cpu()), key
    assert convnet.evaluate(loaded)["top1_error"] == result["top1_error"]
    assert (
        convnet.evaluate(module, dataset="mnist", test_subset=300)["top1_error"]
        == (result["top1_error"])
    )


@pytest.mark.parametrize(
    "arguments", [("evaluate", "{run}"), ("train", "--config", "{run}/config.json")]
)
def test_the_command_line_says_it_cannot_rebuild_a_module_of_ones_own(own_run, arguments, capfd):
    out, _, _ = own_run
    result = run_in_process(capfd, *(argument.format(run=out) for argument in arguments))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "of your own" in result.stderr and "Python API" in result.stderr


def test_fit_refuses_unknown_options_and_bad_values(tmp_path):
    with pytest.raises(UserError, match="no option epoch"):
        convnet.fit("lenet5", epoch=1, out=tmp_path)
    with pytest.raises(UserError, match="--epochs must be at least 1"):
        convnet.fit("lenet5", epochs=0, out=tmp_path)
    with pytest.raises(UserError, match="--model-ema-decay"):  # needs model_ema=True
        convnet.fit("lenet5", model_ema_decay=0.99, out=tmp_path)
    assert not any(tmp_path.iterdir())
