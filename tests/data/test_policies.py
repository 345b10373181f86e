"""The batched augmentation ops against torchvision, which defines them.

Each op on a batch, each image with its own magnitude, equals torchvision's v2 op applied to
that image on its own, for every magnitude torchvision's policies can use, on uint8
images: the comparisons are exact."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import (
    AugMix,
    AutoAugment,
    AutoAugmentPolicy,
    InterpolationMode,
    RandAugment,
    TrivialAugmentWide,
)

from convnet.data.policy_ops import GEOMETRIC_OPS, OPS

TORCHVISION = {
    "ra": RandAugment,
    "ta_wide": TrivialAugmentWide,
    "augmix": AugMix,
    "imagenet": lambda **options: AutoAugment(AutoAugmentPolicy.IMAGENET, **options),
}
# The magnitude bins each torchvision class asks its space for.
BINS = {"ra": 31, "ta_wide": 31, "augmix": 10, "imagenet": 10}


def uint8_images(count: int, channels: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Photo-like uint8 images (smooth shapes plus noise over the full range); 1-channel ones
    digit-like, with MNIST's 2-pixel black border. The first image is flat, the second black:
    AutoContrast and Equalize leave those as they are."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, 256, (count, channels, 6, 6), generator=generator).float()
    smooth = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    noise = torch.randint(-24, 25, smooth.shape, generator=generator)
    images = (smooth + noise).round().clamp(0, 255).to(torch.uint8)
    if channels == 1:
        images[..., :2, :], images[..., -2:, :] = 0, 0
        images[..., :2], images[..., -2:] = 0, 0
    images[0], images[1] = 91, 0
    return images


def as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255  # as convnet.data.transforms.to_model_input


def as_uint8(images: torch.Tensor) -> torch.Tensor:
    assert images.dtype == torch.float32
    return (images * 255).round().to(torch.uint8)


# Ops ---------------------------------------------------------------------------------------


def torchvision_magnitudes(name: str, height: int, width: int) -> list[float]:
    """Every magnitude torchvision's four policies can give op `name` on this image size,
    both signs where signed; [0.0] where it takes none."""
    values = {0.0}
    for policy, bins in BINS.items():
        space = TORCHVISION[policy]()._AUGMENTATION_SPACE
        if name in space:
            magnitudes, signed = space[name]
            table = magnitudes(bins, height, width)
            if table is not None:
                values |= {
                    float(value) * sign for value in table for sign in (1, -1 if signed else 1)
                }
    return sorted(values)


def torchvision_op(name: str, image: torch.Tensor, magnitude: float, interpolation: str):
    """torchvision's op as its policies apply it (fill None: zeros outside the image)."""
    reference = AutoAugment()
    return reference._apply_image_or_video_transform(
        image, name, magnitude, interpolation=InterpolationMode(interpolation), fill=reference._fill
    )


OP_CASES = [
    (name, channels, size, interpolation)
    for name in OPS
    for channels, size in ((1, 32), (3, 32), (1, 28))
    for interpolation in (("nearest", "bilinear") if name in GEOMETRIC_OPS else ("nearest",))
]


@pytest.mark.parametrize(("name", "channels", "size", "interpolation"), OP_CASES)
def test_op_equals_torchvision_image_by_image(name, channels, size, interpolation):
    magnitudes = torchvision_magnitudes(name, size, size)
    images = uint8_images(max(len(magnitudes), 8), channels, size, seed=len(name))
    magnitude = torch.tensor([magnitudes[i % len(magnitudes)] for i in range(len(images))])
    extra = {"interpolation": interpolation} if name in GEOMETRIC_OPS else {}
    batched = OPS[name](images.float(), magnitude, **extra)
    expected = torch.stack(
        [
            torchvision_op(name, image, float(value), interpolation)
            for image, value in zip(images, magnitude, strict=True)
        ]
    )
    assert batched.dtype == torch.float32 and batched.shape == images.shape
    differ = (batched != expected.float()).flatten(1).any(1)
    assert not differ.any(), f"{name}: images differ at magnitudes {magnitude[differ].tolist()}"


def test_colour_leaves_grey_images_alone():
    """torchvision (like PIL) leaves a 1-channel image's saturation as it is."""
    images = uint8_images(4, 1).float()
    assert torch.equal(OPS["Color"](images, torch.tensor([0.9, -0.9, 0.5, -0.99])), images)


def test_ops_change_images():
    """A guard against ops that do nothing: each op (but Identity) changes most images at a
    middle magnitude, on images of levels 30…183 (AutoContrast leaves a full range as it is)."""
    images = (uint8_images(16, 3).float() * 0.6 + 30).round()
    for name, op in OPS.items():
        magnitude = torch.full((16,), 4.0 if name in ("Posterize",) else 0.5)
        if name in ("TranslateX", "TranslateY", "Rotate"):
            magnitude = torch.full((16,), 9.0)
        changed = (op(images, magnitude) != images).flatten(1).any(1)[2:]  # not flat/black
        assert changed.all() != (name == "Identity"), name
