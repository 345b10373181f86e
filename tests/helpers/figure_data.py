"""Made-up experiment results shaped like the real ones, so figures can be drawn in
milliseconds and inspected through matplotlib (tests/report/)."""

from __future__ import annotations

import numpy as np
import torch

from convnet.experiments.cost import CostResult, ModelCost, TimingConditions
from convnet.experiments.evolution import EvolutionResult, ModelOutcome
from convnet.experiments.invariance import Curve, InvarianceResult, Variant
from convnet.experiments.shift import FeatureMapShift, ShiftResult


def invariance_result(test_subset: int | None = None, train_subset: int | None = None):
    """Five variants over three distortions, dense enough that a legend inside would cover
    a curve wherever it went."""
    variants = [
        Variant("lenet5", "lenet5", "plain", {}),
        Variant("lenet5 without pooling", "lenet5", "ablation", {}),
        Variant("lenet5 + augmentation", "lenet5", "augmented", {}),
        Variant("mlp", "mlp", "plain", {}),
        Variant("mlp + augmentation", "mlp", "augmented", {}),
    ]
    curves = []
    for distortion, label, levels in (
        ("translate_x", "pixels", list(range(0, 9))),
        ("rotate", "degrees", list(range(-40, 41, 10))),
        ("scale", "factor", [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4]),
    ):
        accuracy = {}
        for rank, variant in enumerate(variants):
            centre = levels[len(levels) // 2] if distortion != "translate_x" else 0
            spread = (max(levels) - min(levels)) * (0.3 + 0.15 * rank)
            accuracy[variant.label] = [
                0.1 + 0.89 * float(np.exp(-(((level - centre) / spread) ** 2))) for level in levels
            ]
        curves.append(Curve(distortion, label, [float(level) for level in levels], accuracy))
    settings = {"train_subset": train_subset, "test_subset": test_subset}
    return InvarianceResult(settings, variants, curves, test_subset or 10_000, 1.0)


def cost_result():
    """Two models whose times span three orders of magnitude, as LeNet-5 and an MLP do."""
    models = []
    for name, scale in (("lenet5", 1.0), ("mlp", 0.05)):
        seconds = {
            kind: {"1": scale * base, "256": scale * base / 40}
            for kind, base in (("inference", 2e-4), ("training", 8e-4))
        }
        shares = {
            kind: {
                batch: {
                    "convolution": 0.6,
                    "pooling": 0.1,
                    "fully connected": 0.2,
                    "activation": 0.05,
                    "other": 0.05,
                }
                for batch in ("1", "256")
            }
            for kind in ("inference", "training")
        }
        models.append(
            ModelCost(
                name,
                "LeNet" if name == "lenet5" else "MLP",
                61_706,
                61_706,
                246_824,
                int(30_000 / scale),
                416_520,
                416_520,
                seconds_per_image=seconds,
                time_shares=shares,
            )
        )
    conditions = TimingConditions("thread CPU time", 2, 1.0, 1.0, 0.98)
    return CostResult(models, "cpu", "fp32", 1, [1.0, 1.0, 1.0], {}, [], conditions)


def evolution_result(train_subset: int | None = None):
    """Four families at 88–92% test accuracy: bars whose tops are close together."""
    outcomes = [
        ModelOutcome(model, family, year, depth, 60_000, 400_000, error, 30.0, 1000.0, 2, "", False)
        for model, family, year, depth, error in (
            ("lenet5", "LeNet", 1998, 5, 0.115),
            ("alexnet_mini", "AlexNet", 2012, 8, 0.095),
            ("vgg_mini", "VGG", 2014, 11, 0.085),
            ("resnet_mini", "ResNet", 2015, 18, 0.08),
        )
    ]
    settings = {
        "dataset": "fashion-mnist",
        "epochs": 2,
        "train_subset": train_subset,
        "test_subset": None,
    }
    return EvolutionResult(settings, outcomes, train_subset or 60_000, 10_000, {}, 1.0)


def shift_result():
    """A bar-shaped digit shifted 2 pixels left, and made-up counts over 10,000 test digits."""
    original = torch.zeros(32, 32, dtype=torch.bool)
    original[6:26, 14:18] = True
    shifted = torch.roll(original, -2, dims=1)
    counts = torch.from_numpy(np.random.default_rng(0).normal(100, 19, 10_000).round().clip(30))
    stats = {"count": 10_000, "mean": 99.4, "std": 18.7, "median": 99.0, "min": 30, "max": 190}
    closest = {
        "index": 18,
        "label": "3",
        "changed": 154,
        "black_to_white": 77,
        "white_to_black": 77,
    }
    return ShiftResult(
        0, "1", 2, 0.5, 1024, 80, 40, 40, 80, stats, closest, original, shifted, counts.int()
    )


def feature_map_result():
    """A digit, its shifted copy and six 28×28 maps of each, as a C1 layer would give."""
    digit = torch.zeros(32, 32)
    digit[6:26, 14:18] = 1.0
    shifted = torch.roll(digit, -2, dims=1)
    feature = torch.rand(6, 28, 28, generator=torch.Generator().manual_seed(0))
    return FeatureMapShift("c1", 2, 0.0, 8.87, digit, shifted, feature, feature.roll(-2, dims=2))
