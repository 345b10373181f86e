"""The compact member of each family (defined in the family's file, sharing
convnet/models/compact.py; issue 6): registry entries, the family's depth and defining idea,
a few training steps, and the layers that keep the channels-last layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convnet.analysis.summary import summarize
from convnet.models import get_model, get_model_spec

# The depth each family's idea implies (weight layers on the longest path):
# AlexNet 5 conv + 3 FC; VGG-16's 13 conv + 3 FC; NiN 3 mlpconv × 3; GoogLeNet's 22
# (3 stem + 9 Inception × 2 + 1 FC); ResNet-20 (1 + 3 stages × 3 blocks × 2 + 1 FC).
EXPECTED_DEPTH = {
    "alexnet_mini": 8,
    "vgg_mini": 16,
    "nin_mini": 9,
    "googlenet_mini": 22,
    "resnet_mini": 20,
}


@pytest.fixture(autouse=True)
def one_thread():
    """One CPU thread: on a busy 2-core machine a second OpenMP thread waiting for a core
    made googlenet_mini's many small operations 20× slower (measured)."""
    from convnet.experiments import cpu_threads

    with cpu_threads(1):
        yield


def layers_of(model: nn.Module, kind: type) -> list[nn.Module]:
    return [module for module in model.modules() if isinstance(module, kind)]


@pytest.mark.parametrize("name", EXPECTED_DEPTH)
def test_forward_shape_and_registry_entry(name):
    spec = get_model_spec(name)
    assert spec.input_size == (1, 32, 32)
    assert spec.year is not None and spec.paper
    model = get_model(name, num_classes=7).eval()
    images = torch.randn(3, *spec.input_size)
    with torch.no_grad():
        output = model(images)
        split = model.forward_head(model.forward_features(images))
        features = model.forward_features(images)
        layers = images  # every layer in turn, without forward_features / forward_head
        for module in model.features.children():
            layers = module(layers)
        layer_features = layers
        for module in model.head.children():
            layers = module(layers)
    assert output.shape == (3, 7)
    # Bit for bit: the same operations in the same order (untrained features can be ~1e-5).
    torch.testing.assert_close(features, layer_features, rtol=0, atol=0)
    torch.testing.assert_close(split, layers, rtol=0, atol=0)
    torch.testing.assert_close(output, layers, rtol=0, atol=0)


@pytest.mark.parametrize("name", EXPECTED_DEPTH)
def test_depth_is_the_familys(name):
    summary = summarize(get_model(name), get_model_spec(name).input_size, name)
    assert summary.total["depth"] == EXPECTED_DEPTH[name]


@pytest.mark.parametrize("name", EXPECTED_DEPTH)
def test_a_few_training_steps_lower_the_loss(name):
    torch.manual_seed(0)
    model = get_model(name).train()
    images, labels = torch.randn(32, 1, 32, 32), torch.arange(32) % 10
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same dropout masks each time
        return nn.functional.cross_entropy(model(images), labels)

    before = loss().item()
    for _ in range(8):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss().item() < before


def test_each_keeps_its_familys_defining_idea():
    alexnet = get_model("alexnet_mini")
    assert len(layers_of(alexnet, nn.Conv2d)) == 5 and len(layers_of(alexnet, nn.Linear)) == 3
    assert layers_of(alexnet, nn.Dropout)
    pools = layers_of(alexnet, nn.MaxPool2d)
    assert pools and all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # overlapping

    vgg = get_model("vgg_mini")
    assert {conv.kernel_size for conv in layers_of(vgg, nn.Conv2d)} == {(3, 3)}

    nin = get_model("nin_mini")
    assert not layers_of(nin, nn.Linear)  # class maps averaged, no fully connected layer
    assert sum(conv.kernel_size == (1, 1) for conv in layers_of(nin, nn.Conv2d)) == 6
    assert isinstance(nin.head[0], nn.AdaptiveAvgPool2d)

    from convnet.models.googlenet import Inception
    from convnet.models.resnet import BasicBlock

    googlenet = get_model("googlenet_mini")
    modules = layers_of(googlenet, Inception)
    assert len(modules) == 9
    kernels = {conv.kernel_size for conv in layers_of(modules[0], nn.Conv2d)}
    assert kernels == {(1, 1), (3, 3), (5, 5)}

    resnet = get_model("resnet_mini")
    assert len(layers_of(resnet, BasicBlock)) == 9
    assert len(layers_of(resnet, nn.BatchNorm2d)) == 19
    # He et al. 2016, §4.2: ResNet-20 has 0.27 M parameters; option-A shortcuts add none.
    assert round(sum(p.numel() for p in resnet.parameters()) / 1e6, 2) == 0.27
    block = layers_of(resnet, BasicBlock)[3]  # first block of stage 2: 16 → 32 maps, stride 2
    x = torch.randn(2, 16, 32, 32)
    shortcut = block.shortcut(x)
    assert shortcut.shape == (2, 32, 16, 16)
    torch.testing.assert_close(shortcut[:, 8:24], x[:, :, ::2, ::2])
    assert shortcut[:, :8].abs().sum() == 0 and shortcut[:, 24:].abs().sum() == 0


def _channels_last_input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape).contiguous(memory_format=torch.channels_last).requires_grad_()


@pytest.mark.parametrize("layer", ["global_average_pool", "shortcut", "concatenate"])
def test_layout_keeping_layers_compute_the_plain_operation(layer):
    """Same values and gradients as the plain PyTorch operation, and gradients that come
    back channels-last like the inputs (channels-first ones make training slow)."""
    from convnet.models.compact import GlobalAveragePool
    from convnet.models.googlenet import concatenate_channels
    from convnet.models.resnet import BasicBlock

    ours, plain = {
        "global_average_pool": (GlobalAveragePool(), nn.AdaptiveAvgPool2d(1)),
        "shortcut": (
            BasicBlock(16, 32, stride=2).shortcut,
            lambda x: nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 8, 8)),
        ),
        "concatenate": (concatenate_channels, lambda *xs: torch.cat(xs, dim=1)),
    }[layer]
    inputs = [_channels_last_input(4, 16, 8, 8)]
    if layer == "concatenate":
        inputs.append(_channels_last_input(4, 5, 8, 8))
    expected, result = plain(*inputs), ours(*inputs)
    torch.testing.assert_close(result, expected)
    outside = torch.randn_like(expected)
    expected_gradients = torch.autograd.grad(expected, inputs, outside)
    gradients = torch.autograd.grad(result, inputs, outside)
    for gradient, expected_gradient in zip(gradients, expected_gradients, strict=True):
        torch.testing.assert_close(gradient, expected_gradient)
        assert gradient.is_contiguous(memory_format=torch.channels_last)


def test_dropout_keeps_each_value_with_probability_one_minus_p():
    from convnet.models.compact import FastDropout

    dropout, x = FastDropout(0.4), torch.ones(200_000)
    torch.manual_seed(0)
    kept = dropout(x)
    dropped, scaled = kept.unique().tolist()
    assert dropped == 0 and scaled == pytest.approx(1 / 0.6)  # the expectation is kept
    assert (kept > 0).float().mean().item() == pytest.approx(0.6, abs=0.005)
    assert torch.equal(dropout.eval()(x), x)
