"""The accounting of `convnet summary` (convnet/analysis/summary.py): LeNet-5 layer by layer as
LeCun et al. 1998 count it, totals every registered model agrees with, depth as the longest
path, and each dense layer's MACs half the FLOPs PyTorch's FLOP counter counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import convnet
from convnet.analysis.summary import macs_text, matching_sources, summarize, summary_table
from convnet.models import MODELS, get_model, get_model_spec, list_models
from convnet.models.lenet import EuclideanRBF, PartialConv2d, TrainableSubsampling

# LeCun et al. 1998, §II-B: trainable parameters / connections of each layer.
PAPER = {
    "features.c1": (156, 122_304),
    "features.s2": (12, 5_880),
    "features.c3": (1_516, 151_600),
    "features.s4": (32, 2_000),
    "features.c5": (48_120, 48_120),
    "head.f6": (10_164, 10_164),
    "head.output": (0, 840),
}


def test_lenet5_1998_matches_the_paper_layer_by_layer():
    summary = summarize(get_model("lenet5_1998"), (1, 32, 32), "lenet5_1998")
    counted = {layer.name: (layer.trainable_params, layer.connections) for layer in summary.layers}
    assert counted == PAPER
    assert summary.total["trainable_params"] == 60_000
    assert summary.total["connections"] == 340_908
    assert matching_sources(summary) == {
        "LeCun et al. 1998 (Proc. IEEE)": True,
        "the lecture": False,
    }


def test_lenet5_shapes_and_macs():
    summary = summarize(get_model("lenet5"), (1, 32, 32), "lenet5")
    shapes = [layer.output_shape for layer in summary.layers]
    assert shapes == [[6, 28, 28], [6, 14, 14], [16, 10, 10], [16, 5, 5], [120, 1, 1], [84], [10]]
    # C1: 28·28 positions × 6 maps × 25 weights.
    assert summary.layers[0].macs == 28 * 28 * 6 * 25
    assert summary.total["params"] == 61_706


@pytest.mark.parametrize("name", list_models())
def test_totals_are_consistent(name):
    model = build_for_counting(name)  # shapes and counts only: on the meta device
    summary = summarize(model, get_model_spec(name).quick_input_size, name)
    assert summary.total["params"] == sum(p.numel() for p in model.parameters())
    assert summary.total["params"] >= sum(layer.params for layer in summary.layers)
    assert summary.total["depth"] >= 1
    assert summary.total["connections"] >= summary.total["macs"] > 0


def test_depth_counts_the_longest_path_not_the_layers():
    import torch
    from torch import nn

    class TwoBranches(nn.Module):
        def __init__(self):
            super().__init__()
            self.short = nn.Conv2d(1, 2, 1)
            self.long = nn.Sequential(
                nn.Conv2d(1, 2, 1), nn.ReLU(), nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
            )
            self.fc = nn.Linear(2 * 4 * 4, 3)

        def forward(self, x):
            return self.fc(torch.flatten(self.short(x) + self.long(x), 1))

    summary = summarize(TwoBranches(), (1, 4, 4))
    assert summary.total["depth"] == 4  # 3 convolutions on the long branch + the classifier


def test_the_summary_line_gives_macs_in_a_unit_that_shows_them():
    assert macs_text(416_520) == "416,520 MACs" and macs_text(1_814_000_000) == "1.814 GMACs"
    text = summary_table(summarize(get_model("lenet5"), (1, 32, 32), "lenet5"))
    assert "0.000 GMACs" not in text and " MACs, activations" in text


# Layers whose arithmetic is not the dense product FlopCounterMode counts: LeNet-5's
# partial C3 is computed as a dense convolution with a mask (the summary counts the
# connections of Table I), and the RBF output and trainable subsampling are no matmul.
NOT_DENSE = (PartialConv2d, EuclideanRBF, TrainableSubsampling)


def build_for_counting(name: str) -> nn.Module:
    try:  # the meta device counts shapes without arithmetic
        with torch.device("meta"):
            return get_model(name, num_classes=7).eval()
    except (RuntimeError, NotImplementedError):
        return get_model(name, num_classes=7).eval()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_summary_macs_are_half_the_flops_pytorch_counts(name):
    model = build_for_counting(name)
    size = get_model_spec(name).quick_input_size
    table = convnet.summary(model, size)
    device = next(model.parameters()).device
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, *size, device=device))
    per_module = {key: sum(counts.values()) for key, counts in counter.get_flop_counts().items()}
    root = type(model).__name__
    modules = dict(model.named_modules())
    for layer in table.layers:
        flops = per_module.get(f"{root}.{layer.name}", 0)
        module = modules[layer.name]
        if isinstance(module, PartialConv2d):  # dense with a mask: more computed than kept
            assert flops >= 2 * layer.macs > 0, layer
        elif isinstance(module, NOT_DENSE):
            assert flops == 0, layer
        else:
            assert flops == 2 * layer.macs, layer
    if not any(isinstance(module, NOT_DENSE) for module in modules.values()):
        assert counter.get_total_flops() == 2 * table.total["macs"] > 0
