"""Receptive fields computed from layer geometry agree with the pixels that really feed a
cell: LeNet-5's published sizes, and the support of a cell's gradient in networks with
padding and strides."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from convnet.analysis.receptive_field import receptive_fields
from convnet.models import get_model


def test_lenet5_fields():
    fields = receptive_fields(get_model("lenet5").features)
    sizes = {name: fields[name].size for name in ("c1", "s2", "c3", "s4", "c5")}
    assert sizes == {"c1": (5, 5), "s2": (6, 6), "c3": (14, 14), "s4": (16, 16), "c5": (32, 32)}
    assert fields["c3"].step == (2, 2) and fields["c3"].start == (0, 0)
    assert fields["c3"].of(9, 9) == (18, 18, 31, 31)  # the last C3 cell reaches the corner
    assert receptive_fields(get_model("lenet5_1998").features)["c3"] == fields["c3"]


def gradient_support(network: nn.Module, side: int, row: int, column: int) -> tuple:
    """First row, first column, last row, last column of the input pixels whose gradient
    reaches cell (row, column) of the network's one output map (positive weights: no
    cancellation)."""
    pixels = torch.rand(1, 1, side, side, dtype=torch.float64, requires_grad=True)
    network(pixels)[0, 0, row, column].backward()
    rows, columns = torch.nonzero(pixels.grad[0, 0], as_tuple=True)
    return rows.min().item(), columns.min().item(), rows.max().item(), columns.max().item()


@pytest.mark.parametrize(
    "layers",
    [
        [nn.Conv2d(1, 1, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(1, 1, 3, stride=2, padding=1)],
        [nn.Conv2d(1, 1, 5, stride=2), nn.Tanh(), nn.AvgPool2d(3, stride=1), nn.Conv2d(1, 1, 2)],
        [nn.Conv2d(1, 1, (3, 5), padding=(0, 2)), nn.AvgPool2d(2, padding=1)],
    ],
)
def test_fields_are_the_pixels_that_feed_a_cell(layers):
    network = nn.Sequential(*layers).double()
    for layer in network:
        if isinstance(layer, nn.Conv2d):
            layer.weight.data.abs_().add_(0.1)
    side = 24
    out = network(torch.zeros(1, 1, side, side, dtype=torch.float64)).shape[-2:]
    field = receptive_fields(network)[str(len(layers) - 1)]
    for row, column in ((0, 0), (out[0] // 2, out[1] // 2), (out[0] - 1, out[1] - 1)):
        top, left, bottom, right = field.of(row, column)
        clipped = (max(top, 0), max(left, 0), min(bottom, side - 1), min(right, side - 1))
        assert gradient_support(network, side, row, column) == clipped
