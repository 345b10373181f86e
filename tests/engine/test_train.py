"""Training (convnet/engine/train.py): one epoch of LeNet-5 on real MNIST, the files of a run,
a short run that learns, a trained run never overwritten, and resnet_mini on CIFAR-10 in
colour, crashed and resumed bit-exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import convnet.engine.train as train_module
from convnet.cli import main
from convnet.data.datasets import DATASETS
from convnet.engine.run import Run
from convnet.engine.train import TrainConfig, fit
from tests.helpers.cifar_data import (
    CLASSES,
    fetch,
    write_folder,
)
from tests.helpers.training import source_arguments


def test_resnet_mini_trains_on_it_and_resumes_bit_exactly(
    registered, monkeypatch, tmp_path, capsys
):
    files, _ = registered
    cache = tmp_path / "cache"
    assert fetch(write_folder(tmp_path / "source", files), cache) == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def config(out: str) -> TrainConfig:
        return TrainConfig(
            model="resnet_mini",
            dataset="cifar10",
            data_dir=str(cache),
            epochs=2,
            batch_size=32,
            precision="fp32",
            checkpoint_every=3,
            out=str(tmp_path / out),
        )

    try:
        straight = fit(config("straight"), log=lambda message: None)
        original, calls = train_module.save_checkpoint, []

        class Crash(BaseException):
            """Stands in for the process dying right after a checkpoint write."""

        def save_then_crash(*args, **kwargs):
            original(*args, **kwargs)
            calls.append(1)
            if len(calls) == 2:  # step 6 of 7 per epoch: mid-epoch 1
                raise Crash

        monkeypatch.setattr(train_module, "save_checkpoint", save_then_crash)
        with pytest.raises(Crash):
            fit(config("crashed"), log=lambda message: None)
        monkeypatch.setattr(train_module, "save_checkpoint", original)
        resumed = fit(TrainConfig(), resume=tmp_path / "crashed", log=lambda message: None)
    finally:
        torch.set_num_threads(threads)
    first, second = (
        load_file(tmp_path / name / "model.safetensors") for name in ("straight", "crashed")
    )
    assert first["features.conv1.weight"].shape == (16, 3, 3, 3)  # built for 3 colour planes
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    assert resumed["top1_error"] == straight["top1_error"]
    config_saved = Run(tmp_path / "straight").read_config()
    assert config_saved.augment and config_saved.classes == list(CLASSES)
    loaded = Run(tmp_path / "straight").load()
    assert loaded.input_size == (3, 32, 32) and loaded.photos
    assert loaded.normalization == DATASETS["cifar10"].normalization
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "straight"), "--data-dir", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1_error"] == straight["top1_error"]
    # the bare weights, scored on cifar10, are built and normalised for it too
    weights = str(tmp_path / "straight" / "model.safetensors")
    assert (
        main(
            [
                "evaluate",
                "resnet_mini",
                "--weights",
                weights,
                "--dataset",
                "cifar10",
                "--data-dir",
                str(cache),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["top1_error"] == straight["top1_error"]
    # a colour model is not scored on grey digits
    assert main(["evaluate", str(tmp_path / "straight"), "--dataset", "mnist"]) == 2
    assert "trained on cifar10, images of 3 channels, but mnist has 1" in capsys.readouterr().err
    # a photo to classify is read in colour, as photos are
    Image.fromarray(np.full((40, 50, 3), 200, dtype=np.uint8)).save(tmp_path / "photo.png")
    assert main(["predict", str(tmp_path / "straight"), str(tmp_path / "photo.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["name"] in CLASSES


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


@pytest.mark.slow
def test_one_epoch_of_lenet5_reaches_97_5_percent(trained_run):
    run_dir, result = trained_run
    assert result["top1_error"] <= 0.025, result["top1_error"]
    assert result["num_examples"] == 10_000 and result["epochs"] == 1
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
        "figures/mistakes.png",
        "steps.csv",
        "figures/steps.png",
    ):
        assert (run_dir / name).is_file(), name
    assert "figures/steps.png" in (run_dir / "report.html").read_text()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["batch_size"] == 128 and config["augment"] is True  # defaults were resolved
    assert set(result) >= {
        "model",
        "dataset",
        "num_examples",
        "top1_error",
        "top5_error",
        "per_class",
        "easiest",
        "hardest",
        "params",
        "epochs",
        "train_seconds",
        "images_per_second",
        "run_dir",
    }


def test_the_16_step_quick_run_learns(mnist_dir, tmp_path, capsys):
    """`--epochs 1 --train-subset 2000` took 16 steps at batch 128 and ended where it began
    (loss 2.28-2.29 of ln 10 = 2.30, 70-87% test error, over 4 seeds); at the batch fitted
    to the run it learns, and says why its batch is not the default."""
    from convnet.cli import main

    code = main(
        [
            "train",
            "lenet5",
            "--epochs",
            "1",
            "--train-subset",
            "2000",
            "--test-subset",
            "1000",
            "--out",
            str(tmp_path / "run"),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    steps = Run(tmp_path / "run").steps()
    last_tenth = [row["loss"] for row in steps[-len(steps) // 10 :]]
    assert len(steps) >= 100
    assert sum(last_tenth) / len(last_tenth) < 1.5
    assert result["top1_error"] < 0.4 and not result.get("warnings")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["batch_size"] == 16
