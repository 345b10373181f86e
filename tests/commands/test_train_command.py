"""`convnet train` for both kinds of data source: a registered data set held in memory (MNIST)
and image files on disk (a generated folder of classes).

Through `convnet.cli.main`: train a few steps, then evaluate and predict from the run
directory and find the report; refuse every invalid flag with exit status 2; start a run
again from its config.json (bit for bit); refuse the flags of one kind of source for the
other. The engine's own contract (resume, guards, evaluation) is tested in tests/engine/."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from convnet.cli import main
from convnet.engine.run import Run
from tests.helpers.cli import refused, run_in_process
from tests.helpers.folder_data import make_brightness_classes, pattern
from tests.helpers.training import SOURCES, source_arguments


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


@pytest.mark.parametrize("kind", SOURCES)
def test_train_evaluate_predict_and_report(
    kind, folders, mnist_dir, mnist_test, tmp_path, capsys, one_thread
):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lenet5",
                *source_arguments(kind, folders),
                "--epochs",
                "6",
                "--batch-size",
                "16",
                "--precision",
                "fp32",
                "--out",
                str(run_dir),
                "--json",
            ]
        )
        == 0
    )
    trained = json.loads(capsys.readouterr().out)
    assert trained["epochs"] == 6 and trained["run_dir"] == str(run_dir)
    assert trained["top1_error"] < 0.5, trained["top1_error"]  # it learned
    for name in (
        "config.json",
        "metrics.csv",
        "model.safetensors",
        "checkpoint.safetensors",
        "results.json",
        "report.html",
        "figures/curves.png",
        "figures/confusion.png",
        "figures/per_class.png",
    ):
        assert (run_dir / name).is_file(), name
    # the folders: 16 training images in each of 5 classes (tests/conftest.py)
    trained_on = 600 if kind == "idx" else len(list((folders / "train").rglob("*.*")))
    assert trained["num_train_examples"] == trained_on
    card = f"<div>training images × epochs</div><div class='big'>{trained_on:,} × 6</div>"
    assert card in (run_dir / "report.html").read_text()
    history = Run(run_dir).history()
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5, 6]
    assert {"train_loss", "train_error", "eval_loss", "eval_error", "eval_top5_error"} <= set(
        history[0]
    )

    assert main(["evaluate", str(run_dir), "--precision", "fp32", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["top1_error"] == trained["top1_error"]  # one evaluation, same numerics
    assert evaluated["num_examples"] == trained["num_examples"]

    image = tmp_path / "image.png"
    if kind == "idx":
        digit = mnist_test.images[0].numpy()
        Image.fromarray(255 - np.kron(digit, np.ones((3, 3), dtype=np.uint8))).save(image)
        expected = str(int(mnist_test.labels[0]))
    else:
        pattern(2, 50_000).save(image)
        expected = json.loads((run_dir / "config.json").read_text())["classes"][2]
    assert main(["predict", str(run_dir), str(image), "--top", "2", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    names = json.loads((run_dir / "config.json").read_text())["classes"]
    assert predicted[0]["top"][0]["name"] in names
    if trained["top1_error"] < 0.2:
        assert predicted[0]["top"][0]["name"] == expected, predicted


INVALID = {
    "negative weight decay": (["--weight-decay", "-1"], "--weight-decay must be 0 or more"),
    "zero learning rate": (["--lr", "0"], "--lr must be a positive number"),
    "nan learning rate": (["--lr", "nan"], "--lr must be a positive number"),
    "label smoothing 1.5": (["--label-smoothing", "1.5"], "--label-smoothing must be in [0, 1)"),
    "momentum 1": (["--momentum", "1"], "--momentum must be in [0, 1)"),
    "warm-up fraction 2": (["--warmup-fraction", "2"], "--warmup-fraction must be in [0, 1)"),
    "zero epochs": (["--epochs", "0"], "--epochs must be at least 1"),
    "negative checkpoint interval": (
        ["--checkpoint-every", "-2"],
        "--checkpoint-every must be at least 1",
    ),
    "zero checkpoint interval": (
        ["--checkpoint-every", "0"],
        "--checkpoint-every must be at least 1, not 0",
    ),
    "thousands of threads": (["--threads", "9999"], "--threads must be between 0"),
    "both sources": (["--dataset", "fashion-mnist"], "not both"),
    "missing weights": (["--weights", "missing.safetensors"], "missing.safetensors does not exist"),
}


@pytest.mark.parametrize("case", list(INVALID))
@pytest.mark.parametrize("kind", SOURCES)
def test_invalid_flags_exit_2(kind, case, folders, mnist_dir, tmp_path, capsys):
    extra, message = INVALID[case]
    arguments = source_arguments(kind, folders)
    if case == "both sources" and kind == "idx":
        extra = ["--data", str(folders)]
    code = main(["train", "lenet5", *arguments, *extra, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


@pytest.mark.parametrize(
    "flag", [["--image-size", "64"], ["--workers", "2"], ["--strict"], ["--val-fraction", "0.3"]]
)
def test_image_folder_flags_are_refused_for_a_data_set_in_memory(flag, capsys):
    assert main(["train", "lenet5", "--dataset", "mnist", *flag]) == 2
    err = capsys.readouterr().err
    assert flag[0] in err and "image files" in err


def test_the_data_set_cache_is_refused_with_an_image_folder(folders, capsys):
    assert main(["train", "lenet5", "--data", str(folders), "--data-dir", "cache"]) == 2
    assert "--data-dir" in capsys.readouterr().err


def test_config_file_starts_a_run_again(mnist_dir, tmp_path, capsys, one_thread):
    """`--config RUN/config.json` starts from a saved configuration; a flag overrides it."""
    run_dir = tmp_path / "first"
    assert (
        main(
            [
                "train",
                "lenet5",
                "--dataset",
                "mnist",
                "--train-subset",
                "300",
                "--test-subset",
                "100",
                "--epochs",
                "1",
                "--lr",
                "0.02",
                "--out",
                str(run_dir),
            ]
        )
        == 0
    )
    again = tmp_path / "again"
    assert (
        main(
            ["train", "--config", str(run_dir / "config.json"), "--seed", "3", "--out", str(again)]
        )
        == 0
    )
    saved = json.loads((again / "config.json").read_text())
    assert saved["lr"] == 0.02 and saved["train_subset"] == 300 and saved["seed"] == 3
    shutil.rmtree(again)


def test_strict_refuses_an_undecodable_training_image(folders, tmp_path, capsys, one_thread):
    data = shutil.copytree(folders, tmp_path / "data")
    broken = data / "train" / "n01440764" / "not-a-picture.jpg"
    broken.write_bytes(b"this is not a JPEG")
    common = ["train", "lenet5", "--data", str(data), "--epochs", "1", "--workers", "0"]
    assert main([*common, "--strict", "--out", str(tmp_path / "strict")]) == 2
    assert "not-a-picture.jpg" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "lenient"), "--json"]) == 0
    captured = capsys.readouterr()
    assert "not-a-picture.jpg" in captured.err  # said once, and listed in the results
    assert any(item["file"] == str(broken) for item in json.loads(captured.out)["skipped"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seed", "99999999999999999999"], "--seed must be between 0"),
        (["--image-size", "0"], "--image-size must be at least 8"),
        (["--out", "FILE"], "is a file, not a run directory"),
    ],
)
def test_more_bad_values_exit_2(extra, message, folders, tmp_path, capsys):
    (tmp_path / "FILE").write_text("a file")
    extra = [str(tmp_path / "FILE") if item == "FILE" else item for item in extra]
    arguments = ["train", "lenet5", "--data", str(folders), "--workers", "0", *extra]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_a_folder_of_one_class_is_refused(tmp_path, capsys):
    make_brightness_classes(tmp_path / "one", ("a_dark",))
    assert main(["train", "lenet5", "--data", str(tmp_path / "one"), "--workers", "0"]) == 2
    assert "at least 2" in capsys.readouterr().err


def test_config_of_one_source_does_not_start_the_other(
    folders, mnist_dir, tmp_path, capsys, one_thread
):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lenet5",
                *source_arguments("idx", folders),
                "--epochs",
                "1",
                "--out",
                str(run_dir),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["train", "--config", str(run_dir / "config.json"), "--data", str(folders)]) == 2
    assert "does not carry over" in capsys.readouterr().err


TINY = (
    "--epochs",
    "2",
    "--train-subset",
    "300",
    "--test-subset",
    "100",
    "--batch-size",
    "50",
    "--precision",
    "fp32",
    "--threads",
    "1",
)


def test_a_run_repeated_from_its_config_json_has_the_same_weights(mnist_dir, tmp_path, capfd):
    first, again, changed = tmp_path / "first", tmp_path / "again", tmp_path / "changed"
    run_in_process(capfd, "train", "lenet5", *TINY, "--seed", "3", "--out", str(first), check=True)
    config = str(first / "config.json")
    run_in_process(
        capfd, "train", "--config", config, "--threads", "1", "--out", str(again), check=True
    )
    run_in_process(
        capfd,
        "train",
        "--config",
        config,
        "--threads",
        "1",
        "--seed",
        "4",
        "--out",
        str(changed),
        check=True,
    )
    weights = [load_file(path / "model.safetensors") for path in (first, again, changed)]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        assert tensor.equal(weights[1][name]), name  # bit-exact
    assert not all(tensor.equal(weights[2][name]) for name, tensor in weights[0].items())
    saved = [json.loads((path / "config.json").read_text()) for path in (first, again, changed)]
    for document in saved:
        document.pop("out")
    assert saved[0] == saved[1] and saved[2]["seed"] == 4
    assert (first / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("rate", "shown"), [(12345.6, "12,346"), (42.71, "42.7"), (0.3123, "0.312")]
)
def test_a_slow_rate_is_not_printed_as_zero(rate, shown):
    from convnet.commands.train import _rate

    assert _rate(rate) == shown


def test_a_data_set_too_large_for_memory_at_the_models_input_is_refused(
    mnist_dir, tmp_path, capsys, monkeypatch
):
    """MNIST's 70,000 images at resnet18's 3×224×224 would take 42 GB as float32: refused
    before any is prepared, on a machine of 24 GB as on this one."""
    from convnet.data import sources

    monkeypatch.setattr(sources, "physical_memory", lambda: 24 * 2**30)
    arguments = ["train", "resnet18", "--dataset", "mnist", "--out", str(tmp_path / "run")]
    refused(capsys, [*arguments, "--data-dir", str(mnist_dir)], "42.1 GB", "--train-subset")
    assert not (tmp_path / "run").exists()
