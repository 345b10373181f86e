"""The image operations of the automatic-augmentation policies (convnet/data/policies.py),
batched: one call transforms a whole batch, each image by its own magnitude.

They reproduce torchvision's v2 kernels on uint8 images (torchvision.transforms.v2.functional,
as `_AutoAugmentBase._apply_image_or_video_transform` calls them). torchvision's policies
work on uint8 images, PIL or tensor, and so do its users' pipelines for image files;
posterize, solarize and equalize are defined on the 256 levels of a uint8 pixel, and every
colour op rounds its result down to a level before the next op sees it. Our in-memory data
sets come from uint8 pixels too, so every op here takes and returns *levels*: float32
(N, C, H, W) tensors holding whole numbers 0…255 (the uint8 image as floats; `to_levels`,
`from_levels`), and does the arithmetic torchvision's uint8 kernel does, in the same order,
rounding included. The results equal torchvision's ops applied image by image, bit for bit
(tests/data/test_policies.py).

Two details of that arithmetic are worth knowing:
- `a.add_(b, alpha=s)`, with which torchvision blends images, is one fused multiply–add in
  PyTorch's CPU kernels on CPUs that have one (x86-64 with AVX2, ARM64): a + s·b rounded
  once. `_fma` reproduces it in float64. Where PyTorch rounds twice instead (CPUs without
  FMA), torchvision's result differs from ours by one level in a rare pixel.
- Geometric ops build torchvision's inverse affine matrix (`_get_inverse_affine_matrix`) and
  sampling grid (`_affine_grid`) with the same float64 and float32 steps, so nearest
  sampling picks the same pixels; the area outside the image is 0 (torchvision's fill=None).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

Op = Callable[..., torch.Tensor]  # (levels, magnitude (N,), *, interpolation) -> levels


def to_levels(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> float32 levels 0…255 (the uint8 image they came from)."""
    return images.float().mul(255.0).round_().clamp_(0, 255)


def from_levels(levels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Levels -> images in [0, 1], as `convnet.data.transforms.to_model_input` makes them."""
    return levels.div(255.0).to(dtype)


def _fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a·b + c rounded once to float32, as PyTorch's CPU `c.add_(a, alpha=b)` computes it.

    In float64 the product of two float32s is exact, and the sum of levels and blend terms
    nearly always is, so rounding it to float32 gives the fused result (the exception, a
    double rounding, needs a float32 tie at the 53rd bit)."""
    return (a.double() * b.double() + c.double()).float()


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


# Geometry ------------------------------------------------------------------------------------


@functools.cache
def _base_grid(height: int, width: int, device: torch.device) -> torch.Tensor:
    """torchvision's `_affine_grid` base: pixel centres relative to the image centre and 1,
    (1, H·W, 3)."""
    grid = torch.empty(1, height, width, 3, device=device)
    grid[..., 0].copy_(torch.linspace((1.0 - width) * 0.5, (width - 1.0) * 0.5, width))
    grid[..., 1].copy_(torch.linspace((1.0 - height) * 0.5, (height - 1.0) * 0.5, height)[:, None])
    grid[..., 2].fill_(1)
    return grid.view(1, height * width, 3)


def _inverse_affine(
    center: tuple[float, float],
    angle: float = 0.0,
    translate: tuple[float, float] = (0.0, 0.0),
    shear: tuple[float, float] = (0.0, 0.0),
) -> list[float]:
    """torchvision's `_get_inverse_affine_matrix` at scale 1, the same float64 steps with the
    same libm: output pixel -> input pixel, angles in degrees, `center` and `translate` in
    pixels with (0, 0) at the image centre."""
    rotation = math.radians(angle)
    shear_x, shear_y = math.radians(shear[0]), math.radians(shear[1])
    center_x, center_y = center
    cx_plus_tx, cy_plus_ty = center_x + translate[0], center_y + translate[1]
    cos_sy, tan_sx = math.cos(shear_y), math.tan(shear_x)
    a = math.cos(rotation - shear_y) / cos_sy
    b = -(a * tan_sx + math.sin(rotation))
    c = math.sin(rotation - shear_y) / cos_sy
    d = math.cos(rotation) - c * tan_sx
    matrix = [d, -b, 0.0, -c, a, 0.0]
    matrix[2] += center_x - matrix[0] * cx_plus_tx - matrix[1] * cy_plus_ty
    matrix[5] += center_y - matrix[3] * cx_plus_tx - matrix[4] * cy_plus_ty
    return matrix


def _shear_matrix(axis: int) -> Callable[[float, int, int], list[float]]:
    # torchvision shears by atan(magnitude) in degrees about the top-left corner (center=[0, 0]).
    def matrix(value: float, height: int, width: int) -> list[float]:
        degrees = math.degrees(math.atan(value))
        shear = (degrees, 0.0) if axis == 0 else (0.0, degrees)
        return _inverse_affine((-0.5 * width, -0.5 * height), shear=shear)

    return matrix


# Each geometric op's inverse matrix for a magnitude on an image of (height, width).
# TranslateX/Y shift by int(magnitude) pixels (truncated towards 0, as torchvision); Rotate
# takes the angle modulo 360 first (−9° is computed as 351°), as torchvision's rotate does.
_MATRICES: dict[str, Callable[[float, int, int], list[float]]] = {
    "ShearX": _shear_matrix(0),
    "ShearY": _shear_matrix(1),
    "TranslateX": lambda value, h, w: _inverse_affine(
        (0.0, 0.0), translate=(float(int(value)), 0.0)
    ),
    "TranslateY": lambda value, h, w: _inverse_affine(
        (0.0, 0.0), translate=(0.0, float(int(value)))
    ),
    "Rotate": lambda value, h, w: _inverse_affine((0.0, 0.0), angle=-(value % 360)),
}


@functools.lru_cache(maxsize=4096)
def _grid(op: str, value: float, height: int, width: int, device: torch.device) -> torch.Tensor:
    """The sampling grid (H, W, 2) of geometric `op` at magnitude `value`: torchvision's
    inverse matrix, in Python (torch's float64 tan and cos differ from libm's in the last bit
    now and then, which is enough to move a grid point across a float32 rounding boundary),
    then its `_affine_grid` in float32."""
    matrix = _MATRICES[op](value, height, width)
    theta = torch.tensor(matrix, dtype=torch.float32, device=device).view(1, 2, 3)
    half_size = torch.tensor([0.5 * width, 0.5 * height], device=device)
    rescaled = theta.transpose(1, 2).div_(half_size)
    return _base_grid(height, width, device).bmm(rescaled).view(height, width, 2)


def geometric(
    levels: torch.Tensor,
    ops: Sequence[str],
    magnitude: torch.Tensor,
    interpolation: str = "nearest",
) -> torch.Tensor:
    """Each image its own geometric op (`ops[i]`: ShearX, ShearY, TranslateX, TranslateY or
    Rotate) at its own magnitude, in one sampling, as torchvision's `_affine_grid` and
    `_apply_grid_transform` do for one image: fill 0 (torchvision's fill=None), rounded to
    levels.

    A grid is computed once per (op, magnitude, image size) and kept (a policy has a few
    dozen magnitudes). torchvision copies the image for rotations by 0°, 90°, 180° and 270°
    (square images); sampling gives the same pixels there, as the tests check."""
    height, width = levels.shape[2:]
    distinct: dict[tuple[str, float], int] = {}
    keys = zip(ops, magnitude.tolist(), strict=True)
    inverse = [distinct.setdefault(key, len(distinct)) for key in keys]
    grids = [_grid(op, value, height, width, levels.device) for op, value in distinct]
    grid = torch.stack(grids)[torch.tensor(inverse, device=levels.device)]
    warped = F.grid_sample(
        levels, grid, mode=interpolation, padding_mode="zeros", align_corners=False
    )
    return warped.round_()


def _one_geometric(name: str, doc: str) -> Op:
    def op(levels: torch.Tensor, magnitude: torch.Tensor, interpolation: str = "nearest"):
        return geometric(levels, [name] * len(levels), magnitude, interpolation)

    op.__name__, op.__doc__ = name, doc
    return op


shear_x = _one_geometric("ShearX", "ShearX: x + magnitude·y, about the top-left corner.")
shear_y = _one_geometric("ShearY", "ShearY: y + magnitude·x, about the top-left corner.")
translate_x = _one_geometric("TranslateX", "TranslateX: right by int(magnitude) pixels.")
translate_y = _one_geometric("TranslateY", "TranslateY: down by int(magnitude) pixels.")
rotate = _one_geometric("Rotate", "Rotate: magnitude degrees anticlockwise about the centre.")


# Colour --------------------------------------------------------------------------------------


def _blend(levels: torch.Tensor, other: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """torchvision's `_blend(image, other, 1 + magnitude)` on uint8: image·(1 + m) − other·m,
    clamped and rounded down to a level. (Its alpha 1 − (1 + m) is exactly −m.)"""
    ratio = _per_image(1.0 + magnitude.float())
    blended = _fma(other, _per_image(-magnitude.float()), levels * ratio)
    return blended.clamp_(0, 255).floor_()


def _grayscale(levels: torch.Tensor) -> torch.Tensor:
    """torchvision's luma of an RGB uint8 image (ITU-R 601-2), rounded down: (N, 1, H, W)."""
    red, green, blue = levels.unbind(dim=1)
    gray = _fma(blue, torch.tensor(0.114), _fma(green, torch.tensor(0.587), red * 0.2989))
    return gray.floor_()[:, None]


def brightness(levels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Brightness: multiply by 1 + magnitude (a blend with black)."""
    factor = _per_image(1.0 + magnitude.float())
    return levels.mul(factor).clamp_(0, 255).floor_()


def color(levels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Color (saturation): blend with the image's grey version by 1 + magnitude.

    A 1-channel image has no saturation: torchvision returns it unchanged (as PIL does), and
    so does this."""
    if levels.shape[1] == 1:
        return levels
    return _blend(levels, _grayscale(levels), magnitude)


def contrast(levels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Contrast: blend with the image's mean grey level by 1 + magnitude."""
    gray = _grayscale(levels) if levels.shape[1] == 3 else levels
    return _blend(levels, gray.mean(dim=(1, 2, 3), keepdim=True), magnitude)


def sharpness(levels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Sharpness: blend the inner pixels with a 3×3 smoothed image (centre weight 5/13,
    neighbours 1/13, as PIL's SMOOTH filter) by 1 + magnitude; the border stays.

    torchvision convolves with float32 weights and rounds; the smoothed level is a whole
    number over 13, never within 1/26 of a half, so summing the whole numbers first and
    dividing once rounds to the same level, faster than a depthwise convolution."""
    height, width = levels.shape[2:]
    if height <= 2 or width <= 2:
        return levels
    rows = levels[..., :-2, :] + levels[..., 1:-1, :] + levels[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]  # 3×3 sums, exact
    blurred = box.add_(levels[..., 1:-1, 1:-1], alpha=4).div_(13).round_()
    output = levels.clone()
    inner = output[..., 1:-1, 1:-1]
    inner.copy_(_fma(blurred - inner, _per_image(-magnitude.float()), inner))
    return output.clamp_(0, 255).floor_()


def posterize(levels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Posterize: keep the int(magnitude) highest bits of each level."""
    step = torch.pow(2.0, 8 - magnitude.to(levels.device).double().trunc().clamp(0, 8))
    step = _per_image(step.float())
    return levels.div(step).floor_().mul_(step)


def solarize(levels: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Solarize: invert the levels at or above 255·magnitude."""
    threshold = _per_image((255.0 * magnitude.double()).float())
    return torch.where(levels >= threshold, 255.0 - levels, levels)


def autocontrast(levels: torch.Tensor, magnitude: torch.Tensor | None = None) -> torch.Tensor:
    """AutoContrast: stretch each channel's levels to span 0…255 (unchanged if flat)."""
    minimum = levels.amin(dim=(2, 3), keepdim=True)
    maximum = levels.amax(dim=(2, 3), keepdim=True)
    flat = maximum == minimum
    inverse_scale = (maximum - minimum).mul_(1.0 / 255.0)
    minimum = minimum.masked_fill(flat, 0.0)
    inverse_scale = inverse_scale.masked_fill(flat, 1.0)
    return (levels - minimum).div_(inverse_scale).clamp_(0, 255).floor_()


def equalize(levels: torch.Tensor, magnitude: torch.Tensor | None = None) -> torch.Tensor:
    """Equalize: map each channel's levels through its cumulative histogram, with PIL's
    rounding (torchvision's `equalize_image`, whose integer arithmetic this repeats)."""
    flat = levels.flatten(2).long()  # (N, C, H·W)
    histogram = torch.zeros(*flat.shape[:2], 256, dtype=torch.long, device=levels.device)
    histogram.scatter_add_(2, flat, torch.ones_like(flat))
    cumulative = histogram.cumsum(2)
    top = histogram.gather(2, cumulative.argmax(2, keepdim=True))  # count of the highest level
    step = torch.div(flat.shape[2] - top, 255, rounding_mode="floor")
    lut = (cumulative[..., :-1] + step // 2).div_(step.clamp(min=1), rounding_mode="floor")
    lut = torch.cat([torch.zeros_like(lut[..., :1]), lut.clamp_(0, 255)], dim=2)
    equalized = lut.gather(2, flat).view_as(levels).to(levels.dtype)
    return torch.where((step != 0)[..., None], equalized, levels)


def invert(levels: torch.Tensor, magnitude: torch.Tensor | None = None) -> torch.Tensor:
    """Invert: 255 − level."""
    return 255.0 - levels


def identity(levels: torch.Tensor, magnitude: torch.Tensor | None = None) -> torch.Tensor:
    """Identity: the image as it is."""
    return levels


# torchvision's names (`_apply_image_or_video_transform`'s transform ids).
GEOMETRIC_OPS: dict[str, Op] = {
    "ShearX": shear_x,
    "ShearY": shear_y,
    "TranslateX": translate_x,
    "TranslateY": translate_y,
    "Rotate": rotate,
}
OPS: dict[str, Op] = {
    "Identity": identity,
    **GEOMETRIC_OPS,
    "Brightness": brightness,
    "Color": color,
    "Contrast": contrast,
    "Sharpness": sharpness,
    "Posterize": posterize,
    "Solarize": solarize,
    "AutoContrast": autocontrast,
    "Equalize": equalize,
    "Invert": invert,
}
