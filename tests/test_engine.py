"""The one engine's contract, for both kinds of data source: a registered data set held in
memory (MNIST) and image files on disk (a generated folder of classes).

Each test runs the same steps through `convnet.cli.main` for both: train a few steps, crash
and resume bit-exactly, evaluate and predict from the run directory, write the report, stop
on a non-finite loss, refuse every invalid flag with exit status 2, continue a finished run
to more epochs; plus class-name matching and fine-tuning to another class count.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from folder_data import make_split_folders, pattern
from PIL import Image
from safetensors.torch import load_file

import convnet.engine.train as train_module
from convnet.cli import main
from convnet.engine.config import TrainConfig
from convnet.engine.run import Run
from convnet.engine.train import fit

SOURCES = ("idx", "folder")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    return make_split_folders(tmp_path_factory.mktemp("engine") / "data", 16, 6)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def source_arguments(kind: str, folders: Path) -> list[str]:
    """A few steps' worth of data of each kind."""
    if kind == "idx":
        return ["--dataset", "mnist", "--train-subset", "600", "--test-subset", "200"]
    return ["--data", str(folders), "--workers", "0"]


def config_for(kind: str, folders: Path, out: Path, **overrides) -> TrainConfig:
    # On the CPU whatever the machine has: the resume checks are bit-exact.
    values = dict(
        model="lenet5",
        epochs=2,
        batch_size=32,
        precision="fp32",
        out=str(out),
        checkpoint_every=2,
        lr=0.05,
        device="cpu",
    )
    if kind == "idx":
        values.update(dataset="mnist", train_subset=600, test_subset=200)
    else:
        values.update(data=str(folders), workers=0)
    return TrainConfig(**{**values, **overrides})


def quiet(message: str) -> None:
    pass


@pytest.mark.parametrize("kind", SOURCES)
def test_crash_and_resume_gives_identical_weights(
    kind, folders, mnist_dir, tmp_path, monkeypatch, one_thread
):
    straight = fit(config_for(kind, folders, tmp_path / "straight"), log=quiet)
    original, calls = train_module.save_checkpoint, []

    class Crash(BaseException):
        """Stands in for the process dying right after a checkpoint write."""

    def save_then_crash(*args, **kwargs):
        original(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:  # MNIST: mid-epoch 1; the folder's 3 steps: the end of epoch 1
            raise Crash

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_crash)
    with pytest.raises(Crash):
        fit(config_for(kind, folders, tmp_path / "crashed"), log=quiet)
    monkeypatch.setattr(train_module, "save_checkpoint", original)
    assert not Run(tmp_path / "crashed").finished
    resumed = fit(TrainConfig(), resume=tmp_path / "crashed", log=quiet)
    first, second = (
        load_file(tmp_path / name / "model.safetensors") for name in ("straight", "crashed")
    )
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    # identical weights, identical files (the metadata is written in a fixed order)
    assert (tmp_path / "straight" / "model.safetensors").read_bytes() == (
        tmp_path / "crashed" / "model.safetensors"
    ).read_bytes()
    assert resumed["top1_error"] == straight["top1_error"]

    def without_timing(run_dir: Path) -> list[dict]:
        timing = ("epoch_seconds", "images_per_second")
        return [{k: v for k, v in row.items() if k not in timing} for row in Run(run_dir).history()]

    assert without_timing(tmp_path / "crashed") == without_timing(tmp_path / "straight")


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


@pytest.mark.parametrize("kind", SOURCES)
def test_a_non_finite_loss_stops_the_run(kind, folders, mnist_dir, tmp_path, capsys, one_thread):
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "lenet5",
            *source_arguments(kind, folders),
            "--epochs",
            "2",
            "--lr",
            "1e30",
            "--precision",
            "fp32",
            "--out",
            str(run_dir),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Training stopped" in err and "try a smaller --lr" in err, err
    assert "Traceback" not in err and not (run_dir / "results.json").exists()


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


@pytest.mark.parametrize("kind", SOURCES)
def test_resume_with_more_epochs_continues_the_run(
    kind, folders, mnist_dir, tmp_path, capsys, one_thread
):
    run_dir = tmp_path / "run"
    base = ["train", "lenet5", *source_arguments(kind, folders), "--precision", "fp32"]
    assert main([*base, "--epochs", "1", "--out", str(run_dir)]) == 0
    first = load_file(run_dir / "model.safetensors")
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--epochs", "3", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["epochs"] == 3 and "Continuing to 3 epochs (planned: 1)" in captured.err
    assert [row["epoch"] for row in Run(run_dir).history()] == [1, 2, 3]
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 3
    later = load_file(run_dir / "model.safetensors")
    assert any(not torch.equal(first[name], later[name]) for name in first)  # it trained
    # What a resumed run cannot change is refused, not ignored.
    assert main(["train", "--resume", str(run_dir), "--lr", "0.5"]) == 2
    assert "--lr" in capsys.readouterr().err
    assert main(["train", "--resume", str(run_dir), "--epochs", "2"]) == 2
    assert "already trained 3 epochs" in capsys.readouterr().err
    finished = (run_dir / "results.json").read_bytes()
    assert main(["train", "--resume", str(run_dir)]) == 2  # nothing left to train
    assert "has finished its 3 epochs" in capsys.readouterr().err
    assert (run_dir / "results.json").read_bytes() == finished


def make_brightness_classes(root: Path, names: tuple[str, ...], per_class: int = 12) -> Path:
    """Classes a tiny network tells apart at once: uniform grey images of three brightnesses."""
    levels = {"a_dark": 20, "b_mid": 128, "c_bright": 235}
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            level = levels.get(name, 128) + (index % 5) - 2
            Image.new("RGB", (24, 24), (level, level, level)).save(folder / f"{index}.png")
    return root


def test_evaluate_matches_class_folders_by_name(tmp_path, capsys, one_thread):
    """The issue's case: a 3-class run, scored on a folder holding a_dark and c_bright only.
    Position would score every c_bright image as b_mid; by name, each is in its class."""
    data = make_brightness_classes(tmp_path / "three", ("a_dark", "b_mid", "c_bright"))
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "mlp",
                "--data",
                str(data),
                "--image-size",
                "32",
                "--epochs",
                "8",
                "--lr",
                "0.002",
                "--batch-size",
                "8",
                "--no-augment",
                "--precision",
                "fp32",
                "--workers",
                "0",
                "--out",
                str(run_dir),
            ]
        )
        == 0
    )
    capsys.readouterr()
    other = make_brightness_classes(tmp_path / "other", ("a_dark", "c_bright"), per_class=6)
    assert main(["evaluate", str(run_dir), "--data", str(other), "--workers", "0", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    counts = {row["name"]: row["count"] for row in result["per_class"]}
    assert counts == {"a_dark": 6, "b_mid": 0, "c_bright": 6}  # scored whole, by name
    accuracy = {row["name"]: row["accuracy"] for row in result["per_class"]}
    assert accuracy["a_dark"] == 1.0 and accuracy["c_bright"] == 1.0, result["per_class"]
    assert result["top1_error"] == 0.0 and result["num_examples"] == 12
    unsorted = make_brightness_classes(tmp_path / "third", ("a_dark", "unsorted"), per_class=3)
    assert main(["evaluate", str(run_dir), "--data", str(unsorted), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "unsorted" in err and "no class for" in err


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


@pytest.mark.slow
def test_two_processes_train_a_data_set_in_memory(mnist_dir, tmp_path):
    """torchrun, 2 ranks × batch 16 on MNIST: the weights of 1 process × batch 32, as for
    image folders (tests/test_distributed.py), with per-image augmentation on."""
    from test_distributed import _max_difference, _torchrun

    common = [
        "lenet5",
        "--dataset",
        "mnist",
        "--train-subset",
        "640",
        "--test-subset",
        "200",
        "--epochs",
        "1",
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--json",
    ]
    double = _torchrun(*common, "--batch-size", "16", "--out", str(tmp_path / "two"))
    assert double.returncode == 0, double.stderr[-3000:]
    result = json.loads(double.stdout)
    assert result["world_size"] == 2 and result["replicas_identical"]
    single = main(["train", *common, "--batch-size", "32", "--out", str(tmp_path / "one")])
    assert single == 0
    assert (
        _max_difference(
            tmp_path / "two" / "model.safetensors", tmp_path / "one" / "model.safetensors"
        )
        < 1e-5
    )


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


def test_a_trained_run_is_never_overwritten(folders, mnist_dir, tmp_path, capsys, one_thread):
    run_dir = tmp_path / "run"
    arguments = [
        "train",
        "lenet5",
        *source_arguments("idx", folders),
        "--epochs",
        "1",
        "--out",
        str(run_dir),
    ]
    assert main(arguments) == 0
    weights = (run_dir / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(arguments) == 2
    assert "already holds a trained run" in capsys.readouterr().err
    assert (run_dir / "model.safetensors").read_bytes() == weights
    assert main(["train", "--resume", str(run_dir), "--out", str(tmp_path / "x")]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "x").exists()


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


def test_resume_refuses_other_images(folders, tmp_path, capsys, one_thread):
    run_dir = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "lenet5",
                "--data",
                str(folders),
                "--epochs",
                "1",
                "--workers",
                "0",
                "--out",
                str(run_dir),
            ]
        )
        == 0
    )
    fewer = shutil.copytree(folders, tmp_path / "fewer")
    for path in list((fewer / "train" / "n01440764").iterdir())[:3]:
        path.unlink()
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--epochs", "2", "--data", str(fewer)]) == 2
    assert "the same images" in capsys.readouterr().err


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
