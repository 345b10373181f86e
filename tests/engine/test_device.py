"""Devices and precisions (convnet/engine/device.py): what this machine lacks is refused
clearly (exit 2, naming what it has), fp16's gradient scaling is wired into the training
loop (checked on the CPU), and fast inference (batch norm folded into its convolution, bf16
channels-last) computes what the model itself does."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

import convnet.engine.prepare as prepare_module
from convnet.engine.checkpoint import read_state_file
from convnet.engine.device import (
    cudnn_benchmark,
    fast_inference,
    machine_devices,
    mps_available,
    resolve_device,
)
from convnet.engine.train import TrainConfig, fit
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec, list_models
from tests.helpers.cli import run_in_process
from tests.helpers.models import build, computes, device_of

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
def test_a_device_this_machine_lacks_is_refused_naming_what_it_has(device, tmp_path, capfd):
    with pytest.raises(UserError, match=f"--device {device} .* This machine has: cpu"):
        resolve_device(device)
    out = tmp_path / "run"
    assert_refused(
        run_in_process(capfd, "train", "lenet5", "--device", device, *TINY, "--out", str(out)),
        f"--device {device}",
        f"This machine has: {machine_devices()}",
    )
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_fp16_off_cuda_is_refused_naming_what_this_machine_has(command, tmp_path, capfd):
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
    result = run_in_process(capfd, *arguments, "--precision", "fp16")
    assert_refused(result, "--precision fp16 runs on CUDA GPUs", "This machine has: cpu")
    assert not (tmp_path / "run").exists()


def test_an_unknown_device_or_precision_lists_the_choices(capfd):
    assert_refused(run_in_process(capfd, "train", "lenet5", "--device", "tpu"), "cpu, cuda, mps")
    assert_refused(
        run_in_process(capfd, "train", "lenet5", "--precision", "fp8"), "fp32, bf16, fp16"
    )


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


@pytest.mark.parametrize("name", list_models())
def test_inference_folds_batch_norm_exactly_and_undoes_it(name):
    """fast_inference folds every batch norm into its convolution (in evaluation): the same
    outputs up to rounding, and afterwards the very same parameters and modules. A model
    above the real-weights budget (tests/helpers/models.py) is folded and unfolded on the
    meta device, where values are not compared."""
    from convnet.engine.device import conv_batch_norm_pairs, fast_inference

    spec = get_model_spec(name)
    model = build(name).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    generator = torch.Generator().manual_seed(0)
    # statistics far from the identity, so a missed fold shows
    for norm in norms if computes(model) else []:
        for tensor, low, high in (
            (norm.running_mean, -1, 1),
            (norm.running_var, 0.5, 2),
            (norm.weight, 0.5, 1.5),
            (norm.bias, -1, 1),
        ):
            tensor.data.copy_(torch.empty_like(tensor).uniform_(low, high, generator=generator))
    # Every batch norm of our families follows a convolution of its own.
    assert len(conv_batch_norm_pairs(model)) == len(norms)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    images = torch.randn(2, *spec.quick_input_size, device=device_of(model))
    with torch.no_grad():
        reference = model(images)
        with fast_inference(model, torch.device("cpu"), "fp32") as prepare:
            assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
            folded = model(prepare(images))
    if computes(model):
        torch.testing.assert_close(folded, reference, rtol=1e-4, atol=1e-4)
    after = model.state_dict()
    assert list(after) == list(before)
    if computes(model):
        assert all(torch.equal(after[key], before[key]) for key in before)
    assert len([m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]) == len(norms)
    model.train()  # training uses batch statistics: nothing may be folded
    with fast_inference(model, torch.device("cpu"), "fp32"):
        assert len([m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]) == len(
            norms
        )


def test_bf16_channels_last_is_faithful_to_fp32():
    torch.manual_seed(0)
    model = get_model("resnet18", num_classes=10).eval()
    images = torch.randn(4, 3, 64, 64)
    with torch.inference_mode():
        reference = model(images)
        with fast_inference(model, torch.device("cpu"), "bf16") as prepare:
            assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
            fast = model(prepare(images))
    assert fast.dtype == torch.bfloat16
    assert F.cosine_similarity(reference, fast.float(), dim=1).min() >= 0.999
    assert model.conv1.weight.is_contiguous()  # the model's layout is given back


def test_cudnn_searches_its_algorithms_on_cuda_with_fixed_shapes_only():
    size = (3, 224, 224)
    assert cudnn_benchmark(torch.device("cuda", 0), size)
    assert not cudnn_benchmark(torch.device("cuda", 0), None)  # sizes that vary
    assert not any(cudnn_benchmark(torch.device(name), size) for name in ("cpu", "mps"))


def test_training_turns_the_search_on_where_the_decision_says(mnist_dir, tmp_path, monkeypatch):
    """Set in one place, `prepare`, from the run's device and its model's one input size."""
    asked = []
    monkeypatch.setattr(prepare_module, "set_cudnn_benchmark", lambda *a: asked.append(a))
    config = TrainConfig(model="lenet5", dataset="mnist", train_subset=64, test_subset=32,
                         epochs=1, device="cpu", out=str(tmp_path / "run"))  # fmt: skip
    fit(config, log=lambda message: None)
    assert asked == [(torch.device("cpu"), (1, 32, 32))]
