"""The explanation methods (convnet/analysis/explain.py): for a trained LeNet-5 each method's
heat lies on the digit's strokes, Grad-CAM's map is placed where C3's cells look, and
Grad-CAM needs a network with convolutions. The command is tests/commands/'s."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from convnet.analysis.explain import cell_centres, explain, peaks
from convnet.data.transforms import to_model_input
from convnet.errors import UserError
from convnet.models import get_model

pytest.importorskip("captum")

DIGITS = 50  # the first test digits, whatever they are
INK = 0.5  # a stroke pixel: brighter than half the full ink
# Near a stroke: within 3 px of an ink pixel. Grad-CAM's map on C3 has one value per 2 px,
# each from a 14×14-px window; saliency and occlusion are finer (see docs/explain.md).
NEAR = 3


def near_ink(pixels: torch.Tensor, reach: int) -> torch.Tensor:
    """(N, H, W) True within `reach` px (a square) of a stroke pixel of `pixels` (N, 1, H, W)."""
    ink = (pixels[:, 0] > INK).float()[:, None]
    return F.max_pool2d(ink, 2 * reach + 1, stride=1, padding=reach)[:, 0] > 0


@pytest.fixture(scope="module")
def lenet_and_digits(trained_run, mnist_test):
    from convnet.engine.run import Run

    loaded = Run(trained_run[0]).load()
    pixels = to_model_input(mnist_test.images[:DIGITS], loaded.input_size)
    return loaded, pixels


@pytest.mark.parametrize("method", ["gradcam", "saliency", "occlusion"])
def test_the_heat_lies_on_the_strokes(lenet_and_digits, mnist_test, method):
    loaded, pixels = lenet_and_digits
    explanation = explain(loaded.model, pixels, loaded.normalization, method, spec=loaded.spec)
    assert explanation.maps.shape == (DIGITS, 32, 32)
    assert (explanation.predicted == mnist_test.labels[:DIGITS]).float().mean() >= 0.9
    assert explanation.layer == ("features.c3" if method == "gradcam" else None)
    rows, columns = peaks(explanation.maps).T
    region = near_ink(pixels, NEAR)
    on_strokes = region[torch.arange(DIGITS), rows, columns]
    assert on_strokes.float().mean() >= 0.8, on_strokes.logical_not().nonzero().flatten()
    # and most of the heat: the share of its mass near the strokes is well above that region's
    # share of the image
    mass = (explanation.maps * region).sum(dim=(1, 2)) / explanation.maps.sum(dim=(1, 2))
    area = region.float().mean(dim=(1, 2))
    assert (mass / area).mean() >= 1.5


def test_gradcam_cells_are_placed_where_they_look():
    """C3's 10×10 cells on a 32×32 input: cell i sees pixels 2i … 2i + 13 (centre 2i + 6.5)."""
    model = get_model("lenet5").eval()
    centres = cell_centres(model, model.features.c3, (1, 32, 32))
    assert centres.tolist() == [[6.5, 2.0], [6.5, 2.0]]
    stride_two = get_model("resnet_mini").eval()  # padded 3×3 convolutions, stride 2: stage 2
    centres = cell_centres(stride_two, stride_two.features.stage2_block1.conv1, (1, 32, 32))
    assert centres[:, 1].tolist() == [2.0, 2.0]


def test_gradcam_is_refused_for_a_network_without_convolutions():
    with pytest.raises(UserError, match="saliency"):
        explain(get_model("mlp"), torch.zeros(1, 1, 32, 32), (0.0, 1.0), "gradcam")
    assert explain(
        get_model("mlp"), torch.rand(1, 1, 32, 32), (0.0, 1.0), "saliency"
    ).maps.shape == (1, 32, 32)
