"""Deterministic test-time distortions of a batch of images: the lecture's shifts, turns,
size changes, noise and distortions, applied to every test image by the same amount.

Every function takes float images (N, C, H, W) in [0, 1] with background 0 and returns a
new tensor of the same shape; the input is never modified. Random ones (noise, elastic)
draw from a generator seeded by the caller, so the same call gives the same images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from convnet.data.transforms import affine


def _batch(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), not {tuple(images.shape)}")
    return images


def translate(images: torch.Tensor, dx: int, dy: int = 0) -> torch.Tensor:
    """Shift by whole pixels: `dx` to the right, `dy` down; what enters is background 0.

    Exact (no interpolation): pixel (y, x) moves to (y + dy, x + dx), so the ink a shift
    pushes past the border is lost, as with a real camera frame.
    """
    images = _batch(images)
    height, width = images.shape[-2:]
    shifted = torch.zeros_like(images)
    if abs(dx) >= width or abs(dy) >= height:
        return shifted
    source_y = slice(max(0, -dy), height - max(0, dy))
    source_x = slice(max(0, -dx), width - max(0, dx))
    target_y = slice(max(0, dy), height - max(0, -dy))
    target_x = slice(max(0, dx), width - max(0, -dx))
    shifted[..., target_y, target_x] = images[..., source_y, source_x]
    return shifted


def _constant(images: torch.Tensor, value: float) -> torch.Tensor:
    return torch.full((len(images),), float(value), dtype=torch.float32)


def rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """Turn about the image centre by `degrees` (positive turns clockwise on screen,
    where rows run downwards), bilinear interpolation."""
    images = _batch(images)
    zero = _constant(images, 0.0)
    angle = _constant(images, math.radians(degrees))
    return affine(images, angle, _constant(images, 1.0), zero, zero)


def scale(images: torch.Tensor, factor: float) -> torch.Tensor:
    """Enlarge (factor > 1) or shrink (factor < 1) about the image centre."""
    if factor <= 0:
        raise ValueError(f"scale factor must be positive, not {factor}")
    images = _batch(images)
    zero = _constant(images, 0.0)
    return affine(images, zero, _constant(images, factor), zero, zero)


def gaussian_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """Add independent N(0, σ²) to every pixel, then clip to [0, 1]."""
    images = _batch(images)
    if sigma < 0:
        raise ValueError(f"noise sigma must be at least 0, not {sigma}")
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(images.shape, generator=generator, dtype=images.dtype)
    return (images + sigma * noise.to(images.device)).clamp(0.0, 1.0)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    positions = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (positions / sigma) ** 2)
    return kernel / kernel.sum()


def elastic(images: torch.Tensor, alpha: float, sigma: float = 4.0, seed: int = 0) -> torch.Tensor:
    """Elastic distortion of Simard, Steinkraus, Platt, "Best practices for convolutional
    neural networks applied to visual document analysis", ICDAR 2003, §2.

    Each pixel's displacement starts uniform in (−1, 1) on both axes, is smoothed by a
    Gaussian of standard deviation `sigma` pixels, and scaled by `alpha` pixels; the image
    is then resampled bilinearly. Simard et al. found σ = 4, α = 34 good for MNIST.
    """
    images = _batch(images)
    if alpha < 0 or sigma <= 0:
        raise ValueError(f"elastic needs alpha ≥ 0 and sigma > 0, not {alpha} and {sigma}")
    count, _, height, width = images.shape
    generator = torch.Generator().manual_seed(seed)
    field = torch.rand(count, 2, height, width, generator=generator) * 2 - 1
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    # Separable smoothing, zero outside the image as in the paper's convolution.
    field = F.conv2d(
        field, kernel.view(1, 1, 1, -1).expand(2, 1, 1, -1), padding=(0, radius), groups=2
    )
    field = F.conv2d(
        field, kernel.view(1, 1, -1, 1).expand(2, 1, -1, 1), padding=(radius, 0), groups=2
    )
    displacement = alpha * field.permute(0, 2, 3, 1)  # (N, H, W, 2) in pixels, (x, y)
    identity = torch.eye(2, 3).expand(count, 2, 3)
    grid = F.affine_grid(identity, [count, 1, height, width], align_corners=False)
    # Grid units are [-1, 1] across the image: one pixel is 2 / size.
    grid = grid + displacement * torch.tensor([2.0 / width, 2.0 / height])
    return F.grid_sample(
        images,
        grid.to(images.dtype).to(images.device),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )


@dataclass(frozen=True)
class Distortion:
    """One axis of the invariance experiment: a transform and the levels to sweep it over."""

    name: str
    label: str  # axis label for plots and tables
    apply: Callable[[torch.Tensor, float], torch.Tensor]
    levels: tuple[float, ...]
    identity: float  # the level that leaves an image unchanged


def _steps(start: float, stop: float, step: float) -> tuple[float, ...]:
    count = round((stop - start) / step)
    return tuple(round(start + index * step, 6) for index in range(count + 1))


# The sweeps of the invariance experiment (issue 4): ±6 px keeps a 20×20 MNIST digit
# inside the 32×32 field it sits in; Simard's α = 34 is the middle of the elastic sweep.
DISTORTIONS: dict[str, Distortion] = {
    d.name: d
    for d in (
        Distortion(
            "translate_x",
            "horizontal shift (pixels, + is right)",
            lambda x, k: translate(x, int(k), 0),
            _steps(-6, 6, 1),
            0.0,
        ),
        Distortion(
            "translate_y",
            "vertical shift (pixels, + is down)",
            lambda x, k: translate(x, 0, int(k)),
            _steps(-6, 6, 1),
            0.0,
        ),
        Distortion("rotate", "rotation (degrees)", rotate, _steps(-45, 45, 7.5), 0.0),
        Distortion("scale", "scale factor", scale, _steps(0.6, 1.4, 0.1), 1.0),
        Distortion(
            "noise",
            "Gaussian noise σ (pixel values in [0, 1])",
            gaussian_noise,
            _steps(0.0, 0.6, 0.1),
            0.0,
        ),
        Distortion(
            "elastic",
            "elastic distortion α (pixels, σ = 4)",
            elastic,
            _steps(0.0, 102.0, 17.0),
            0.0,
        ),
    )
}
