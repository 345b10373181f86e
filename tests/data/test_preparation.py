"""The photo evaluation steps call Pillow as torchvision's Resize and CenterCrop do, so that
`evaluate`, `predict` and `serve` need not import torchvision: the same pixels, image for
image, for both aspects, odd sizes, each filter, and a crop larger than the image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, InterpolationMode, Resize
from torchvision.transforms import functional as TF

from convnet.data.preparation import (
    CentreCrop,
    ResizeShorterSide,
    evaluation_transform,
    to_tensor,
)

SIZES = [(500, 375), (375, 500), (257, 256), (31, 97), (224, 224), (1000, 3)]


def photo(width: int, height: int, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "L": 1}[mode]
    pixels = np.random.default_rng(width * height).integers(0, 256, (height, width, channels))
    return Image.fromarray(pixels.astype(np.uint8).squeeze(-1 if channels == 1 else None), mode)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest", "lanczos"])
def test_resize_is_torchvisions(size, interpolation):
    image = photo(*size)
    ours = ResizeShorterSide(224, interpolation)(image)
    theirs = Resize(224, InterpolationMode(interpolation), antialias=True)(image)
    assert ours.size == theirs.size
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))


@pytest.mark.parametrize("size", [*SIZES, (100, 50), (223, 225)])
def test_centre_crop_is_torchvisions(size):
    image = photo(*size)
    assert np.array_equal(np.asarray(CentreCrop(224)(image)), np.asarray(CenterCrop(224)(image)))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_to_tensor_is_pil_to_tensor(mode):
    image = photo(37, 19, mode)
    assert torch.equal(to_tensor(image), TF.pil_to_tensor(image))


def test_the_evaluation_transform_is_torchvisions_preset():
    """Resize 256, centre crop 224, [0, 1], ImageNet normalization: torchvision's preset."""
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    image = photo(500, 375)
    ours = evaluation_transform(256, 224, mean, std)(image)
    preset = [Resize(256, antialias=True), CenterCrop(224)]
    expected = TF.pil_to_tensor(preset[1](preset[0](image)))
    expected = TF.normalize(TF.convert_image_dtype(expected, torch.float), mean, std)
    assert ours.shape == (3, 224, 224)
    assert (ours - expected).abs().max() <= 1e-6
