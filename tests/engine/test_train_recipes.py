"""The recipe options in training (convnet/engine/train.py with engine/recipe.py): every one
on every kind of data source and under torchrun, accumulation equal to a larger batch, frozen
tensors that stay bit for bit, the moving average kept as the model, early stopping keeping
the best epoch, and a run with all of them killed with SIGKILL and resumed bit for bit."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import convnet.engine.train as train_module
from convnet.cli import main
from convnet.engine.train import TrainConfig, fit
from convnet.models import get_model
from tests.helpers.cifar_data import fetch, write_folder
from tests.helpers.distributed import CPU
from tests.helpers.training import quiet

# Every recipe option at once, each on (auto-augment, random erasing, mixup, cutmix, EMA,
# clipping, accumulation, AdamW, one-cycle, early stopping, a classifier learning rate).
ALL_OPTIONS = [
    "--opt", "adamw", "--lr", "0.003", "--lr-scheduler", "onecycle", "--weight-decay", "0.01",
    "--norm-weight-decay", "0.0", "--mixup-alpha", "0.2", "--cutmix-alpha", "1.0",
    "--auto-augment", "ta_wide", "--random-erase", "0.25", "--model-ema",
    "--model-ema-decay", "0.9", "--model-ema-steps", "2", "--clip-grad-norm", "1.0",
    "--grad-accum-steps", "2", "--patience", "5", "--head-lr-scale", "2.0",
    "--label-smoothing", "0.1",
]  # fmt: skip
FIELDS = {"opt": "adamw", "lr_scheduler": "onecycle", "mixup_alpha": 0.2, "cutmix_alpha": 1.0,
          "auto_augment": "ta_wide", "random_erase": 0.25, "model_ema": True,
          "clip_grad_norm": 1.0, "grad_accum_steps": 2, "patience": 5, "head_lr_scale": 2.0}  # fmt: skip
MNIST = ["--dataset", "mnist", "--train-subset", "256", "--test-subset", "100"]


@pytest.mark.parametrize("kind", ["idx", "folder", "shards", "cifar10"])
def test_every_recipe_option_trains_on_every_kind_of_source(
    kind, mnist_dir, folders, shards, registered, tmp_path, capsys
):
    """Saved in config.json and in effect: the moving average is the kept model, steps
    take two batches, the classifier's learning rate is twice the others'."""
    if kind == "idx":
        source = MNIST
    elif kind in ("folder", "shards"):
        source = ["--data", str(folders if kind == "folder" else shards), "--workers", "0"]
    else:
        files, _ = registered
        cache = tmp_path / "cache"
        assert fetch(write_folder(tmp_path / "source", files), cache) == 0
        capsys.readouterr()  # what fetching printed
        source = ["--dataset", "cifar10", "--data-dir", str(cache), "--train-subset", "256"]
    out = tmp_path / "run"
    arguments = ["train", "lenet5", *source, *ALL_OPTIONS, "--epochs", "2", "--batch-size", "16"]
    assert main([*arguments, "--out", str(out), "--json"]) == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "config.json").read_text())
    assert {key: saved[key] for key in FIELDS} == FIELDS
    assert result["kept"]["weights"] == "moving average"
    assert result["kept"]["epochs_trained"] == 2
    tensors = load_file(out / "checkpoint.safetensors")
    ema = {k[len("ema.module.") :]: v for k, v in tensors.items() if k.startswith("ema.module.")}
    with safe_open(out / "checkpoint.safetensors", "pt") as checkpoint:
        groups = json.loads(checkpoint.metadata()["param_groups"])
    kept = load_file(out / "model.safetensors")
    assert kept.keys() == ema.keys()
    if result["kept"]["epoch"] == 2:  # the average as the last checkpoint holds it
        assert all(torch.equal(kept[k], ema[k]) for k in kept)
    assert [group.get("lr_scale", 1.0) for group in groups] == [1.0, 1.0, 2.0, 2.0]
    steps = (out / "steps.csv").read_text().splitlines()[1:]
    with safe_open(out / "checkpoint.safetensors", "pt") as checkpoint:
        images = json.loads(checkpoint.metadata()["state"])["train_images"]
    assert len(steps) == 2 * -(-images // 32)  # one step per two batches of 16
    assert "ema_eval_error" in (out / "metrics.csv").read_text().splitlines()[0]


def test_recipe_options_under_torchrun(folders, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "convnet", "train", "lenet5", "--data", str(folders), "--workers", "0",
         *ALL_OPTIONS, "--epochs", "1", "--batch-size", "8", "--out", str(out), "--json", *CPU,
         "--backend", "gloo"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads(result.stdout)
    assert document["world_size"] == 2 and document["replicas_identical"]
    assert document["kept"]["weights"] == "moving average"
    page = (out / "report.html").read_text()  # written by rank 0 alone
    assert "The model kept (model.safetensors, scored above): the moving average" in page
    assert "error, moving average</th>" in page  # its column in the epochs' table


def config(mnist_dir, out, **values) -> TrainConfig:
    base = dict(model="lenet5", dataset="mnist", train_subset=512, test_subset=100, epochs=1,
                precision="fp32", augment=False, device="cpu", out=str(out), lr=0.05)  # fmt: skip
    return TrainConfig(**{**base, **values})


def test_accumulated_batches_give_the_weights_of_one_larger_batch(mnist_dir, tmp_path, one_thread):
    """Batch 8 with 4 accumulation steps against batch 32, on LeNet-5 (no batch norm), fp32."""
    fit(config(mnist_dir, tmp_path / "large", batch_size=32), log=quiet)
    fit(config(mnist_dir, tmp_path / "small", batch_size=8, grad_accum_steps=4), log=quiet)
    large = load_file(tmp_path / "large" / "model.safetensors")
    small = load_file(tmp_path / "small" / "model.safetensors")
    difference = max((large[k] - small[k]).abs().max().item() for k in large)
    assert difference < 1e-5, difference


def test_frozen_tensors_stay_bit_for_bit(mnist_dir, tmp_path, one_thread):
    torch.manual_seed(0)
    initial = get_model("lenet5", num_classes=10, in_channels=1).state_dict()
    result = fit(config(mnist_dir, tmp_path / "run", batch_size=32, freeze=["features.*"]),
                 log=quiet)  # fmt: skip
    trained = load_file(tmp_path / "run" / "model.safetensors")
    frozen = [name for name in trained if name.startswith("features.")]
    assert frozen and all(torch.equal(trained[name], initial[name]) for name in frozen)
    assert not torch.equal(trained["head.output.weight"], initial["head.output.weight"])
    assert set(result["frozen"]["parameters"]) == {
        n for n in frozen if "weight" in n or "bias" in n
    }


def test_early_stopping_keeps_the_best_epoch(mnist_dir, tmp_path, monkeypatch, one_thread):
    """Scripted held-out errors 0.5, 0.4, 0.45, 0.46: with --patience 2 the run stops after
    epoch 4 and keeps epoch 2's weights and score."""
    errors, saved, real = iter([0.5, 0.4, 0.45, 0.46, 0.47]), [], train_module.evaluate

    def scripted(*args, **kwargs):
        evaluation = real(*args, **kwargs)
        evaluation.result["top1_error"] = next(errors)
        return evaluation

    def save_weights(path, model, metadata=None):
        saved.append({k: v.clone() for k, v in model.state_dict().items()})

    monkeypatch.setattr(train_module, "evaluate", scripted)
    monkeypatch.setattr(train_module, "save_weights", save_weights)
    result = fit(config(mnist_dir, tmp_path / "run", batch_size=64, epochs=6, patience=2),
                 log=quiet)  # fmt: skip
    assert result["kept"] == {"weights": "model", "epoch": 2, "epochs_trained": 4, "patience": 2,
                              "why": "the test error's best epoch (--patience 2)"}  # fmt: skip
    assert len(saved) == 2 and result["top1_error"] == 0.4
    assert any("chose epoch 2 by its test error" in line for line in result["warnings"])
    history = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(history) == 1 + 4


def test_a_run_with_every_option_killed_and_resumed_ends_bit_for_bit(mnist_dir, tmp_path):
    """SIGKILL at a random step (checkpoints every step), then --resume: the same weights
    and the same moving average as the run never interrupted."""
    arguments = ["train", "lenet5", *MNIST, *ALL_OPTIONS, "--epochs", "2", "--batch-size", "16",
                 "--precision", "fp32", "--threads", "1", "--checkpoint-every", "1", *CPU, "--no-report"]  # fmt: skip
    command = [sys.executable, "-m", "convnet", *arguments]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    # the uninterrupted run beside the one killed (one thread each: the same sums either way)
    log = (tmp_path / "straight.log").open("w")  # a file, not a pipe: a full pipe would stall it
    uninterrupted = subprocess.Popen([*command, "--out", str(straight)],
                                     stdout=subprocess.DEVNULL, stderr=log)  # fmt: skip
    try:
        stop_at = random.Random(os.getpid()).randint(2, 14)  # of 16 steps
        process = subprocess.Popen([*command, "--out", str(killed)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 300
        steps = killed / "steps.csv"
        while time.monotonic() < deadline and process.poll() is None:
            if steps.is_file() and len(steps.read_text().splitlines()) > stop_at:
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.01)
        assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
        resumed = subprocess.run(  # one thread, as before: the same summation order
            [sys.executable, "-m", "convnet", "train", "--resume", str(killed), "--threads", "1",
             "--no-report"],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert uninterrupted.wait(timeout=600) == 0, (tmp_path / "straight.log").read_text()
    finally:  # never leave a training process behind a failed assertion
        if uninterrupted.poll() is None:
            uninterrupted.kill()
        log.close()
    for name in ("model.safetensors", "checkpoint.safetensors"):
        first, second = (load_file(path / name) for path in (straight, killed))
        assert first.keys() == second.keys()
        assert all(torch.equal(first[key], second[key]) for key in first), name
