"""`convnet evaluate` and `convnet predict`: scores and predictions of a trained run, runs
told apart from model names, image files of every kind prepared as the run's data was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.cli import main
from convnet.engine.metrics import easiest_and_hardest
from tests.helpers.cli import assert_user_error, refused, run_in_process
from tests.helpers.digit_drawings import with_orientation
from tests.helpers.folder_data import make_split_folders, pattern
from tests.helpers.images import MODES, _in_mode, digit_png


def test_evaluate_and_predict_a_trained_run(trained_run, mnist_test, tmp_path, capfd):
    run_dir, trained = trained_run
    evaluated = json.loads(
        run_in_process(capfd, "evaluate", str(run_dir), "--json", check=True).stdout
    )
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
        run_in_process(
            capfd, "predict", str(run_dir), *paths, "--top", "3", "--json", check=True
        ).stdout
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

    weights = run_in_process(
        capfd,
        "predict",
        "lenet5",
        "--weights",
        str(run_dir / "model.safetensors"),
        paths[0],
        check=True,
    )
    assert weights.stdout.startswith(paths[0])


@pytest.mark.parametrize("option", ["--crop", "--resize", "--extremes"])
def test_evaluate_refuses_a_zero_size_instead_of_ignoring_it(option, tmp_path, capfd):
    assert_user_error(
        run_in_process(capfd, "evaluate", str(tmp_path), option, "0"),
        f"{option} must be at least 1",
    )


@pytest.mark.parametrize("command", ["evaluate", "export", "explain"])
def test_a_run_and_a_model_name_are_told_apart(command, tmp_path, trained_run, capfd):
    """A model name without --weights, or a run directory with --weights, gets a message
    that says which was meant; both are mistakes a new user made."""
    run_dir, _ = trained_run
    extra = {
        "evaluate": [],
        "export": ["--out", str(tmp_path / "m.onnx")],
        "explain": [str(tmp_path / "digit.png")],
    }[command]
    assert_user_error(
        run_in_process(capfd, command, "lenet5", *extra), "'lenet5' is a model name", "--weights"
    )
    weights = str(run_dir / "model.safetensors")
    assert_user_error(
        run_in_process(capfd, command, str(run_dir), "--weights", weights, *extra),
        "is a directory",
        "drop --weights",
        f"convnet {command} lenet5 --weights",
    )


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A small run trained on colour photos of five classes (stripes at five angles)."""
    root = tmp_path_factory.mktemp("photos")
    data = make_split_folders(root / "data", 16, 4)
    run_dir = root / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert (
            main(
                [
                    "train",
                    "lenet5",
                    "--data",
                    str(data),
                    "--epochs",
                    "3",
                    "--workers",
                    "0",
                    "--precision",
                    "fp32",
                    "--out",
                    str(run_dir),
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    return run_dir


def test_predict_on_a_rotated_photo_gives_the_upright_probabilities(folder_run, tmp_path, capsys):
    upright = pattern(2, 900, size=60)
    upright.save(tmp_path / "upright.png")
    (tmp_path / "sideways.png").write_bytes(with_orientation(upright, 6))
    assert (
        main(
            [
                "predict",
                str(folder_run),
                str(tmp_path / "upright.png"),
                str(tmp_path / "sideways.png"),
                "--precision",
                "fp32",
                "--json",
            ]
        )
        == 0
    )
    first, second = json.loads(capsys.readouterr().out)
    assert first["top"] == second["top"]


def test_a_folder_of_every_mode_is_scored_whole(folder_run, tmp_path, capsys):
    """The run's class folders hold the same photo in every mode: all are scored (none
    skipped), each one with the class of its 8-bit original."""
    names = json.loads((folder_run / "config.json").read_text())["classes"]
    data = tmp_path / "modes"
    for label in range(len(names)):
        folder = data / names[label]
        folder.mkdir(parents=True)
        picture = pattern(label, 20_000, size=40)
        for mode in MODES:
            stored, file_format = _in_mode(picture, mode)
            stored.save(
                folder / f"{mode.replace(';', '')}.{file_format.lower()}", format=file_format
            )
        picture.save(folder / "original.png")
    assert (
        main(
            [
                "evaluate",
                str(folder_run),
                "--data",
                str(data),
                "--workers",
                "0",
                "--precision",
                "fp32",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["num_skipped"] == 0 and result["num_examples"] == len(names) * (len(MODES) + 1)


def test_evaluate_prepares_digit_files_as_predict_does(trained_run, mnist_test, tmp_path, capsys):
    """40 MNIST test digits saved as dark-on-white PNG class folders: a digit run scores them
    as `convnet predict` reads them (it once resized and cropped them as photos: 70% error)."""
    data = tmp_path / "digits"
    paths = []
    for index in range(40):
        folder = data / str(int(mnist_test.labels[index]))
        folder.mkdir(parents=True, exist_ok=True)
        digit = np.kron(mnist_test.images[index].numpy(), np.ones((3, 3), dtype=np.uint8))
        Image.fromarray(255 - digit).save(folder / f"{index}.png")
        paths.append(str(folder / f"{index}.png"))
    run_dir = trained_run[0]
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                "--data",
                str(data),
                "--workers",
                "0",
                "--precision",
                "fp32",
                "--json",
            ]
        )
        == 0
    )
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["preprocessing"]["preparation"] == "digit"
    assert main(["predict", str(run_dir), *paths, "--precision", "fp32", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    wrong = sum(item["top"][0]["name"] != Path(item["image"]).parent.name for item in predicted)
    assert evaluated["num_examples"] == 40
    assert round(evaluated["top1_error"] * 40) == wrong and wrong <= 2


@pytest.mark.parametrize("crop", ["48", "8"])
def test_a_crop_the_model_cannot_take_is_refused_naming_it(crop, folder_run, capsys):
    """lenet5 trained at 32×32: a 48 crop ended in "mat1 and mat2 shapes cannot be
    multiplied" (a traceback); now the size check of training, naming the flag."""
    refused(
        capsys,
        ["evaluate", str(folder_run), "--crop", crop, "--workers", "0"],
        f"lenet5 cannot take 3×{crop}×{crop} input",
        f"choose another --crop (not {crop})",
    )


def test_the_preparation_follows_the_run_the_weights_file_or_the_flag(folder_run, capfd):
    """lenet5 takes one channel, yet trained on photos: the run says photo, its weights file
    read alone says so in its metadata (the channels would say digit), --preparation wins."""
    data = folder_run.parent / "data"
    photo = next((data / "val").rglob("*.JPEG"))
    common = ("--workers", "0", "--precision", "fp32", "--json")
    result = run_in_process(capfd, "evaluate", str(folder_run), "--data", str(data), *common)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["preprocessing"]["preparation"] == "photo"
    assert "Prepared the images as photos (the run's training data)." in result.stderr

    weights = str(folder_run / "model.safetensors")
    result = run_in_process(capfd, "predict", "lenet5", "--weights", weights, str(photo), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["preparation"] == "photo"
    assert "Prepared the images as photos (the weights' metadata)." in result.stderr

    flag = ("--preparation", "digit")
    result = run_in_process(capfd, "evaluate", str(folder_run), "--data", str(data), *flag, *common)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["preprocessing"]["preparation"] == "digit"
    assert "Prepared the images as digits (--preparation digit)." in result.stderr


def test_a_resize_smaller_than_the_crop_is_refused_naming_both(folder_run, capsys):
    data = str(folder_run.parent / "data")
    refused(
        capsys,
        ["evaluate", str(folder_run), "--data", data, "--resize", "20", "--workers", "0"],
        "--resize 20 is smaller than the centre crop 32",
    )


def test_a_run_scored_on_a_data_set_of_other_classes_is_refused(trained_run, capsys):
    """MNIST's digits and Fashion-MNIST's clothes: ten classes of one channel each, but a
    '1' is not a 'Trouser'; refused before any image is read."""
    refused(
        capsys,
        ["evaluate", str(trained_run[0]), "--dataset", "fashion-mnist"],
        "The model's classes are 0, 1, 2, … (10), but fashion-mnist's are T-shirt/top,",
        "the data set it was trained for",
    )
