"""Registered models as the model tests build them: a fresh one for each test, with real
weights where it fits the budget below, else on the meta device."""

from __future__ import annotations

from functools import cache

import torch
from torch import nn

from convnet.models import get_model, get_model_spec

# What a test may build with real weights and compute with, as timm's own model tests cap
# theirs (a parameter and a MAC budget, at the smallest input the model takes: the
# registry's quick_input_size). Above it, a model is built on the meta device: its shapes,
# parameter counts and autograd graph are those of the real model, without weights or
# arithmetic, so the tests check them there and check values only with real weights. The
# eight VGGs (129-140 M parameters: 0.5 GB each in fp32, 1-3 s to initialise on two cores),
# AlexNet (57 M) and ResNet-152 (58 M) are above it, so that two test processes at once stay
# within the suite's 4 GB; below it, alexnet_mini computes AlexNet's kinds of layers and
# ResNet-101 ResNet-152's bottleneck blocks.
MAX_REAL_PARAMS = 50_000_000
MAX_REAL_MACS = 300_000_000  # per image at quick_input_size


def macs_per_image(model: nn.Module, size: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one image, counted on the meta device (no arithmetic)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.zeros(1, *size, device="meta"))
    return counter.get_total_flops() // 2


@cache  # the verdict per name, not the model: each test builds its own
def within_budget(name: str) -> bool:
    try:
        with torch.device("meta"):
            model = get_model(name, num_classes=7)
    except NotImplementedError:  # an initialisation the meta device cannot run: a small one
        return True
    params = sum(p.numel() for p in model.parameters())
    size = get_model_spec(name).quick_input_size
    return params <= MAX_REAL_PARAMS and macs_per_image(model, size) <= MAX_REAL_MACS


def build(name: str, num_classes: int = 7) -> nn.Module:
    """A fresh `name` for `num_classes` classes: seeded real weights within the budget, on
    the meta device above it."""
    torch.manual_seed(0)
    if within_budget(name):
        return get_model(name, num_classes=num_classes)
    with torch.device("meta"):
        return get_model(name, num_classes=num_classes)


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def computes(model: nn.Module) -> bool:
    """Whether the model has real weights: values can be checked, not only shapes."""
    return device_of(model).type != "meta"


def seeded(name: str, num_classes: int, **config) -> nn.Module:
    """Registered model `name` with the weights of seed 0."""
    torch.manual_seed(0)
    return get_model(name, num_classes=num_classes, **config)


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert sorted(actual) == sorted(expected)
    for key in expected:
        assert torch.equal(actual[key], expected[key]), key
