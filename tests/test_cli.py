"""The command line as a user meets it: round trip, JSON contract, and clean errors."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from convnet.engine.metrics import easiest_and_hardest


def digit_png(mnist_test, index, path):
    """A real test digit, 4× larger, dark ink on a light RGB background, as a photo would be."""
    digit = np.kron(mnist_test.images[index].numpy(), np.ones((4, 4), dtype=np.uint8))
    Image.fromarray(255 - digit).convert("RGB").save(path)
    return path


def test_evaluate_and_predict_a_trained_run(trained_run, mnist_test, tmp_path):
    run_dir, trained = trained_run
    evaluated = json.loads(run_cli("evaluate", str(run_dir), "--json", check=True).stdout)
    assert evaluated["top1_error"] == trained["top1_error"]
    assert len(evaluated["per_class"]) == 10
    accuracy = torch.tensor(
        [row["accuracy"] for row in evaluated["per_class"]], dtype=torch.float64
    )
    easiest, hardest = easiest_and_hardest(
        accuracy, torch.tensor([row["count"] for row in evaluated["per_class"]])
    )  # only classes that stand apart from the median class, at most 3 each
    assert [row["index"] for row in evaluated["easiest"]] == easiest
    assert [row["index"] for row in evaluated["hardest"]] == hardest
    assert all(row["accuracy"] > 0.5 for row in evaluated["easiest"])

    paths = [str(digit_png(mnist_test, i, tmp_path / f"digit{i}.png")) for i in range(10)]
    predictions = json.loads(
        run_cli("predict", str(run_dir), *paths, "--top", "3", "--json", check=True).stdout
    )
    assert [item["image"] for item in predictions] == paths
    correct = sum(
        int(item["top"][0]["name"]) == int(mnist_test.labels[i])
        for i, item in enumerate(predictions)
    )
    assert correct >= 9, predictions
    for item in predictions:
        probabilities = [t["probability"] for t in item["top"]]
        assert (
            probabilities == sorted(probabilities, reverse=True)
            and 0 < sum(probabilities) <= 1.0001
        )

    weights = run_cli(
        "predict", "lenet5", "--weights", str(run_dir / "model.safetensors"), paths[0], check=True
    )
    assert weights.stdout.startswith(paths[0])


def test_summary_json_contract():
    document = json.loads(run_cli("summary", "lenet5_1998", "--json", check=True).stdout)
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


def test_summary_text_says_which_source_it_matches():
    text = run_cli("summary", "lenet5_1998", check=True).stdout
    assert "matches LeCun et al. 1998" in text and "does not match the published LeNet-5" in text


def assert_user_error(result, *phrases):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


@pytest.mark.parametrize(
    "arguments, says",
    [
        (["zoo", "--nosuchflag"], "convnet zoo: error: unrecognized arguments: --nosuchflag"),
        (["train", "lenet5", "--lr", "abc"], "convnet train: error: argument --lr"),
        (["evaluate", "x", "--compile", "maybe"], "convnet evaluate: error: argument --compile"),
    ],
)
def test_command_line_mistakes_get_one_line_from_the_command_given(arguments, says):
    result = run_cli(*arguments)
    assert_user_error(result, says, f"See 'convnet {arguments[0]} --help'")
    assert "usage:" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_output_cut_short_by_a_closed_pipe_is_not_a_traceback():
    """`convnet summary resnet152 --json | head -c 10`: the reader leaves early."""
    process = subprocess.Popen(
        [sys.executable, "-m", "convnet", "summary", "resnet152", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    process.stdout.read(10)
    process.stdout.close()
    error = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and "Traceback" not in error, error


@pytest.mark.parametrize("option", ["--crop", "--resize", "--extremes"])
def test_evaluate_refuses_a_zero_size_instead_of_ignoring_it(option, tmp_path):
    assert_user_error(
        run_cli("evaluate", str(tmp_path), option, "0"), f"{option} must be at least 1"
    )


@pytest.mark.parametrize("command", ["evaluate", "export", "explain"])
def test_a_run_and_a_model_name_are_told_apart(command, tmp_path, trained_run):
    """A model name without --weights, or a run directory with --weights, gets a message
    that says which was meant; both are mistakes a new user made."""
    run_dir, _ = trained_run
    extra = {
        "evaluate": [],
        "export": ["--out", str(tmp_path / "m.onnx")],
        "explain": [str(tmp_path / "digit.png")],
    }[command]
    assert_user_error(run_cli(command, "lenet5", *extra), "'lenet5' is a model name", "--weights")
    weights = str(run_dir / "model.safetensors")
    assert_user_error(
        run_cli(command, str(run_dir), "--weights", weights, *extra),
        "is a directory",
        "drop --weights",
        f"convnet {command} lenet5 --weights",
    )


def test_a_damaged_weights_file_gets_no_advice_to_run_its_code(tmp_path):
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))
    result = run_cli("evaluate", "lenet5", "--weights", str(damaged))
    assert_user_error(result, "refusing to load it", "PyTorch's restricted loader says")
    assert "weights_only` set to `False`" not in result.stderr


def test_user_errors_exit_2_without_traceback(tmp_path, trained_run):
    run_dir, _ = trained_run
    assert_user_error(run_cli("train", "lenet6"), "Unknown model 'lenet6'", "lenet5_1998")
    assert_user_error(run_cli("train", "lenet5", "--dataset", "cifar"), "Unknown data set", "mnist")
    assert_user_error(run_cli("train", "lenet5", "--epochs", "-1"), "--epochs")
    assert_user_error(run_cli("train", "lenet5", "--device", "tpu"), "Unknown device")
    assert_user_error(run_cli("train", "lenet5", "--frobnicate"), "unrecognized arguments")
    empty = {"CONVNET_DATA_DIR": str(tmp_path / "empty")}
    assert_user_error(run_cli("train", "lenet5", env=empty), "convnet data fetch mnist")
    assert_user_error(run_cli("evaluate", str(tmp_path)), "no config.json")
    half = tmp_path / "half"
    half.mkdir()
    (half / "config.json").write_text((run_dir / "config.json").read_text())
    assert_user_error(run_cli("evaluate", str(half)), "has no weights", "--resume")
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    assert_user_error(
        run_cli("predict", str(run_dir), str(not_image)), "notes.png", "not a readable image"
    )
    assert_user_error(
        run_cli("predict", str(run_dir), str(tmp_path / "absent.png")), "no such file"
    )
    wrong = tmp_path / "wrong.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(3)}, wrong)
    assert_user_error(
        run_cli("predict", "lenet5", "--weights", str(wrong), str(not_image)), "does not fit"
    )


def test_corrupt_idx_file_is_a_user_error(mnist_dir, tmp_path):
    import shutil

    shutil.copytree(mnist_dir / "mnist", tmp_path / "mnist")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00")
    result = run_cli("train", "lenet5", "--data-dir", str(tmp_path))
    assert_user_error(result, "train-labels-idx1-ubyte is corrupt")


def test_pickle_weights_that_run_code_are_refused(tmp_path):
    import pickle

    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"weight": Exploit()}))
    image = tmp_path / "x.png"
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(image)
    result = run_cli("predict", "lenet5", "--weights", str(bad), str(image))
    assert_user_error(result, "refusing to load")
    assert not marker.exists()


def test_data_list_json():
    rows = json.loads(run_cli("data", "list", "--json", check=True).stdout)
    assert {row["name"] for row in rows} >= {"mnist", "fashion-mnist"}


def refused(capsys, arguments, *phrases):
    """`convnet ARGUMENTS` in this process: exit status 2 and a message naming each phrase
    (an uncaught exception, the traceback a user would see, fails the test)."""
    from convnet.cli import main

    code = main(list(arguments))
    error = capsys.readouterr().err
    assert code == 2, error
    for phrase in phrases:
        assert phrase in error, error
    return error


def test_summary_refuses_a_negative_class_count_without_traceback():
    assert_user_error(
        run_cli("summary", "lenet5", "--num-classes", "-1"), "--num-classes must be at least 2"
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
    from convnet.models import get_model

    path = tmp_path / "seven.safetensors"
    save_weights(path, get_model("lenet5", num_classes=7))
    refused(
        capsys,
        ["summary", "lenet5", "--weights", str(path), "--num-classes", "5"],
        "classify 7 classes, not the 5 of --num-classes",
    )
    assert main(["summary", "lenet5", "--weights", str(path), "--num-classes", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"][-1]["output_shape"] == [7]


def test_train_refuses_checkpoint_every_zero(mnist_dir, tmp_path, capsys):
    # tiny, so that a run which is not refused ends (and fails the test) in a few seconds
    run = [
        "train",
        "lenet5",
        "--epochs",
        "1",
        "--train-subset",
        "64",
        "--test-subset",
        "64",
        "--data-dir",
        str(mnist_dir),
        "--out",
        str(tmp_path / "run"),
    ]
    for steps in ("0", "-2"):
        refused(
            capsys,
            [*run, "--checkpoint-every", steps],
            f"--checkpoint-every must be at least 1, not {steps}",
        )
    assert not (tmp_path / "run").exists()
