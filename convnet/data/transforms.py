"""Whole-batch tensor transforms: padding to a model's input, normalising on the model's
device, and the random augmentations.

Everything works on (N, C, H, W) float tensors in [0, 1] with background 0, so a batch of
thousands of images is one call rather than thousands of per-image Python transforms.
Each augmentation takes its random numbers as an argument, a few uniform draws per image,
so the caller decides where they come from (the seed, epoch and image index).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F


def to_model_input(images: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """uint8 (N, H, W) or (N, C, H, W) -> float (N, C, h, w) in [0, 1], centred by padding.

    MNIST's 28×28 digits go into a 32×32 field with 2 pixels of background on each side,
    as LeCun et al. 1998 did for LeNet-5 (§III-A). Larger images are resized instead.
    """
    if images.ndim == 3:
        images = images[:, None]
    channels, height, width = size
    images = images.float().div_(255.0)
    if images.shape[1] != channels:
        images = (
            images.expand(-1, channels, -1, -1)
            if images.shape[1] == 1
            else images.mean(1, keepdim=True)
        )
    pad_height, pad_width = height - images.shape[2], width - images.shape[3]
    if pad_height >= 0 and pad_width >= 0:
        top, left = pad_height // 2, pad_width // 2
        return F.pad(images, (left, pad_width - left, top, pad_height - top))
    return F.interpolate(images, size=(height, width), mode="bilinear", antialias=True)


def _channels(value: float | tuple[float, ...]) -> tuple[float, ...]:
    return (value,) if isinstance(value, (int, float)) else tuple(value)


def _as_channels(values: tuple[float, ...], images: torch.Tensor) -> float | torch.Tensor:
    """One value for all channels, or (C, 1, 1) on the images' device and dtype."""
    return values[0] if len(values) == 1 else images.new_tensor(values)[:, None, None]


def _pixel_scale_shift(
    mean: float | tuple[float, ...], std: float | tuple[float, ...]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per channel, what (pixel / 255 − mean) / std multiplies a pixel by and adds."""
    means, stds = _channels(mean), _channels(std)
    count = max(len(means), len(stds))
    means, stds = means * (count // len(means)), stds * (count // len(stds))
    scale = tuple(1 / (255 * value) for value in stds)
    return scale, tuple(-m / s for m, s in zip(means, stds, strict=True))


def normalize(
    images: torch.Tensor, mean: float | tuple[float, ...], std: float | tuple[float, ...]
) -> torch.Tensor:
    """(images − mean) / std, with one value for all channels or one per channel (ImageNet)."""
    mean, std = _as_channels(_channels(mean), images), _as_channels(_channels(std), images)
    return (images - mean) / std


@dataclass(frozen=True)
class DeviceNormalize:
    """A batch as a data source yields it -> the model's input on its device, in one place
    for training and evaluation: moved (without waiting, from pinned memory), uint8 pixels
    made [0, 1] (÷ 255, as torchvision's convert_image_dtype), normalised, and the random
    erasing drawn in the workers applied (`erase_rectangles`). Image files come from the
    workers as uint8 (3·H·W bytes an image, a quarter of float32's); in-memory data sets and
    prepared digits as float in [0, 1]. On the CPU the numbers are those of normalising in
    the workers to within 1e-6 (tests/data/test_device_input.py)."""

    mean: float | tuple[float, ...]
    std: float | tuple[float, ...]

    def __call__(
        self, images: torch.Tensor, device: torch.device, erase: torch.Tensor | None = None
    ) -> torch.Tensor:
        images = images.to(device, non_blocking=True)
        if images.dtype == torch.uint8:
            # ÷ 255 folded into the normalization: one pass, in place (3.6× faster on a
            # batch of 64 photos than three; within 5e-7 of the three passes' numbers).
            scale, shift = _pixel_scale_shift(self.mean, self.std)
            images = images.float()
            images.mul_(_as_channels(scale, images)).add_(_as_channels(shift, images))
        else:
            images = normalize(images, self.mean, self.std)
        if erase is not None:
            images = erase_rectangles(images, erase.to(device, non_blocking=True))
        return images


def erase_rectangles(images: torch.Tensor, rectangles: torch.Tensor) -> torch.Tensor:
    """Set one rectangle of each normalised image (N, C, H, W) to 0, torchvision's
    RandomErasing value: `rectangles` (N, 4) holds (top, left, height, width) in pixels,
    height 0 for an image left whole (convnet/data/preparation.py: `ErasingDraw`)."""
    height, width = images.shape[-2:]
    top, left, tall, wide = rectangles.unbind(1)
    rows = torch.arange(height, device=images.device)
    columns = torch.arange(width, device=images.device)
    inside_rows = (rows >= top[:, None]) & (rows < (top + tall)[:, None])
    inside_columns = (columns >= left[:, None]) & (columns < (left + wide)[:, None])
    inside = inside_rows[:, :, None] & inside_columns[:, None, :]
    return images.masked_fill(inside[:, None], 0.0)


def random_affine(
    images: torch.Tensor,
    uniform: torch.Tensor,
    max_shift: float = 2.0,
    max_degrees: float = 10.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
) -> torch.Tensor:
    """Shift (pixels), rotate and scale each image by its own amount, in one call.

    `uniform` holds four draws in [0, 1) per image, (N, 4): drawn per image rather than per
    batch, an image's augmentation does not depend on which batch or process it lands in."""
    count, _, height, width = images.shape
    angle = (uniform[:, 0] * 2 - 1) * math.radians(max_degrees)
    scale = scale_range[0] + uniform[:, 1] * (scale_range[1] - scale_range[0])
    # affine_grid works in [-1, 1] coordinates: a shift of k pixels is 2k / size.
    shift_x = (uniform[:, 2] * 2 - 1) * max_shift * 2 / width
    shift_y = (uniform[:, 3] * 2 - 1) * max_shift * 2 / height
    return affine(images, angle, scale, shift_x, shift_y)


def affine(
    images: torch.Tensor,
    angle: torch.Tensor,
    scale: torch.Tensor,
    shift_x: torch.Tensor,
    shift_y: torch.Tensor,
) -> torch.Tensor:
    """Rotate by `angle` (radians), scale, then shift (in [-1, 1] units), per image.

    The grid maps output coordinates to input coordinates, so it uses the inverse transform.
    """
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos, sin, -(cos * shift_x + sin * shift_y)], dim=1),
            torch.stack([-sin, cos, -(-sin * shift_x + cos * shift_y)], dim=1),
        ],
        dim=1,
    ).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_crop_flip(images: torch.Tensor, uniform: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Pad each image by `padding` pixels of 0 on every side, take a crop of its own size at
    a random offset (−padding … +padding pixels in each direction, each equally likely), and
    mirror it left–right with probability 1/2: the CIFAR recipe of He et al. 2016, §4.2.

    `uniform` holds three draws in [0, 1) per image, (N, 3): vertical offset, horizontal
    offset, flip. One gather for the whole batch; the result is (N, C, H, W) like `images`."""
    count, channels, height, width = images.shape
    positions = 2 * padding + 1
    top = (uniform[:, 0] * positions).long().clamp_(max=positions - 1)
    left = (uniform[:, 1] * positions).long().clamp_(max=positions - 1)
    flip = uniform[:, 2] < 0.5
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = top[:, None] + torch.arange(height)
    columns = torch.arange(width).expand(count, width)
    columns = torch.where(flip[:, None], columns.flip(1), columns) + left[:, None]
    return padded[
        torch.arange(count)[:, None, None, None],
        torch.arange(channels)[None, :, None, None],
        rows[:, None, :, None],
        columns[:, None, None, :],
    ]


@dataclass(frozen=True)
class Augmentation:
    """A batched random augmentation: `apply(images, uniform)` with `draws` uniform numbers
    per image, (N, draws)."""

    draws: int
    apply: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    description: str


# A registered data set names its augmentation (DatasetSpec.augmentation).
AUGMENTATIONS: dict[str, Augmentation] = {
    "affine": Augmentation(4, random_affine, "shift ±2 px, rotate ±10°, scale 0.9–1.1 (digits)"),
    "crop_flip": Augmentation(
        3, random_crop_flip, "random crop with 4 px of padding, horizontal flip (He et al. 2016)"
    ),
}
