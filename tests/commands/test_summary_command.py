"""`convnet summary`: the JSON contract, the sources a LeNet-5 matches, class counts."""

from __future__ import annotations

import json

import pytest

from convnet.models import get_model
from tests.helpers.cli import _cli_json, assert_user_error, refused, run_in_process


def test_summary_json_contract(capfd):
    document = json.loads(
        run_in_process(capfd, "summary", "lenet5_1998", "--json", check=True).stdout
    )
    assert set(document) >= {"model", "input_size", "layers", "total"}
    assert set(document["layers"][0]) >= {
        "name",
        "type",
        "output_shape",
        "params",
        "trainable_params",
        "connections",
        "macs",
    }
    assert document["total"]["connections"] == 340_908 and document["total"]["depth"] == 5


def test_summary_text_says_which_source_it_matches(capfd):
    text = run_in_process(capfd, "summary", "lenet5_1998", check=True).stdout
    assert "matches LeCun et al. 1998" in text and "does not match the published LeNet-5" in text


def test_summary_refuses_a_negative_class_count_without_traceback(capfd):
    assert_user_error(
        run_in_process(capfd, "summary", "lenet5", "--num-classes", "-1"),
        "--num-classes must be at least 2",
    )


@pytest.mark.parametrize(("model", "count"), [("lenet5", "0"), ("resnet18", "0"), ("lenet5", "1")])
def test_summary_refuses_fewer_than_two_classes(model, count, capsys):
    refused(
        capsys,
        ["summary", model, "--num-classes", count],
        f"--num-classes must be at least 2 (a classifier needs at least 2 classes), not {count}",
    )


def test_summary_num_classes_must_agree_with_weights(tmp_path, capsys):
    from convnet.cli import main
    from convnet.engine.checkpoint import save_weights

    path = tmp_path / "seven.safetensors"
    save_weights(path, get_model("lenet5", num_classes=7))
    refused(
        capsys,
        ["summary", "lenet5", "--weights", str(path), "--num-classes", "5"],
        "classify 7 classes, not the 5 of --num-classes",
    )
    assert main(["summary", "lenet5", "--weights", str(path), "--num-classes", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"][-1]["output_shape"] == [7]


@pytest.fixture
def empty_hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_summary_and_predict_commands(capsys, empty_hub):
    total = _cli_json(capsys, "summary", "googlenet")["total"]
    assert (total["depth"], total["params"]) == (22, 6_624_904)
    missing = run_in_process(
        capsys,
        "predict",
        "resnet18",
        "nothing.png",
        "--weights",
        "IMAGENET1K_V1",
        env={"TORCH_HOME": str(empty_hub.parent.parent)},
    )
    assert missing.returncode == 2
    assert "hub" in missing.stderr and "Traceback" not in missing.stderr
