"""Devices and precisions: what this machine lacks is refused clearly (exit 2, naming what it
has), and fp16's gradient scaling is wired into the training loop (checked on the CPU)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli
from safetensors.torch import load_file

import convnet.engine.prepare as prepare_module
from convnet.engine.checkpoint import read_state_file
from convnet.engine.device import machine_devices, mps_available, resolve_device
from convnet.engine.train import TrainConfig, fit
from convnet.errors import UserError

TINY = ("--epochs", "1", "--train-subset", "200", "--test-subset", "100", "--threads", "1")
ABSENT = [
    name
    for name, here in (("cuda", torch.cuda.is_available()), ("mps", mps_available()))
    if not here
]


def assert_refused(result, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


@pytest.mark.parametrize("device", ABSENT)
def test_a_device_this_machine_lacks_is_refused_naming_what_it_has(device, tmp_path):
    with pytest.raises(UserError, match=f"--device {device} .* This machine has: cpu"):
        resolve_device(device)
    out = tmp_path / "run"
    assert_refused(
        run_cli("train", "lenet5", "--device", device, *TINY, "--out", str(out)),
        f"--device {device}",
        f"This machine has: {machine_devices()}",
    )
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_fp16_off_cuda_is_refused_naming_what_this_machine_has(command, tmp_path):
    arguments = {
        "train": ("train", "lenet5", *TINY, "--out", str(tmp_path / "run")),
        "evaluate": ("evaluate", "lenet5", "--weights", str(tmp_path / "w.safetensors")),
        "predict": (
            "predict",
            "lenet5",
            str(tmp_path / "digit.png"),
            "--weights",
            str(tmp_path / "w.safetensors"),
        ),
    }[command]
    if command != "train":
        from safetensors.torch import save_file

        from convnet.models import get_model

        save_file(get_model("lenet5").state_dict(), tmp_path / "w.safetensors")
        from PIL import Image

        Image.new("L", (28, 28)).save(tmp_path / "digit.png")
    result = run_cli(*arguments, "--precision", "fp16")
    assert_refused(result, "--precision fp16 runs on CUDA GPUs", "This machine has: cpu")
    assert not (tmp_path / "run").exists()


def test_an_unknown_device_or_precision_lists_the_choices():
    assert_refused(run_cli("train", "lenet5", "--device", "tpu"), "cpu, cuda, mps")
    assert_refused(run_cli("train", "lenet5", "--precision", "fp8"), "fp32, bf16, fp16")


def small_config(out, **overrides) -> TrainConfig:
    values = dict(
        model="lenet5",
        epochs=1,
        batch_size=50,
        train_subset=300,
        test_subset=100,
        checkpoint_every=2,
        precision="fp32",
        out=str(out),
    )
    return TrainConfig(**{**values, **overrides})


def test_the_gradient_scaler_scales_the_loss_and_unscales_before_every_step(
    mnist_dir, tmp_path, monkeypatch
):
    """fp16 needs CUDA; here an enabled CPU GradScaler stands in for it on an fp32 run.
    Scaling the loss by a power of two and dividing the gradients back is exact in fp32, so
    the weights must equal the unscaled run's bit for bit — if the loop scaled without
    unscaling, or stepped around the scaler, they would not."""
    fit(small_config(tmp_path / "plain"), log=lambda message: None)

    scalers = []

    class CountingScaler(torch.amp.GradScaler):
        steps = 0

        def step(self, optimizer, *args, **kwargs):
            CountingScaler.steps += 1
            return super().step(optimizer, *args, **kwargs)

    def enabled_scaler(device, precision):
        scalers.append(CountingScaler("cpu", init_scale=2.0**12))
        return scalers[-1]

    monkeypatch.setattr(prepare_module, "grad_scaler", enabled_scaler)
    fit(small_config(tmp_path / "scaled"), log=lambda message: None)
    assert len(scalers) == 1 and scalers[0].is_enabled() and CountingScaler.steps == 6
    plain = load_file(tmp_path / "plain" / "model.safetensors")
    scaled = load_file(tmp_path / "scaled" / "model.safetensors")
    for name, tensor in plain.items():
        assert torch.equal(tensor, scaled[name]), name
    _, metadata = read_state_file(tmp_path / "scaled" / "checkpoint.safetensors")
    saved = json.loads(metadata["state"])["grad_scaler"]
    assert saved["scale"] == 2.0**12 and saved["_growth_tracker"] == 6  # for an exact resume
