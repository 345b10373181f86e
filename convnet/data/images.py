"""Turning a user's image file into an MNIST-style digit.

MNIST was made this way (LeCun's MNIST page): each digit's bounding box was scaled to fit
20×20 keeping its aspect ratio, then placed in a 28×28 field so that its centre of mass
sits at the centre. Doing the same to a photo or a drawing makes it look like the data
the model learned from, whatever its size, colour or polarity.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.nn import functional as F

from convnet.data.decoding import open_image
from convnet.errors import UserError


def oriented(image: Image.Image) -> Image.Image:
    """The image the right way up: its EXIF orientation (tags 2–8: phones store photos
    sideways and say so there) applied, whatever the pixel mode."""
    try:
        return ImageOps.exif_transpose(image)
    except (ValueError, TypeError, KeyError, OSError, SyntaxError):  # broken EXIF: as stored
        return image


def orient_in_place(image: Image.Image) -> None:
    """`oriented`, without the copy it makes of an upright image (Pillow's `exif_transpose`
    copies even when there is nothing to turn): the web server's images may be 4096² pixels."""
    with contextlib.suppress(ValueError, TypeError, KeyError, OSError, SyntaxError):
        ImageOps.exif_transpose(image, in_place=True)  # broken EXIF: left as stored


def is_uniform(image: Image.Image) -> bool:
    """True when every pixel of `image` is alike (no ink can differ from the background),
    read from the decoded 8- or 16-bit values' extrema: no float copy is made."""
    try:
        extrema = image.getextrema()
    except ValueError:  # a mode Pillow cannot measure (I;16B): leave it to the full path
        return False
    bands = extrema if isinstance(extrema[0], tuple) else (extrema,)
    return all(low == high for low, high in bands)


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def pixel_values(image: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB values (H, W, 3) in [0, 1] and the alpha (H, W) in [0, 1], None where the image
    is opaque, from every mode Pillow opens: 1, L, LA, P, PA, RGB, RGBA, CMYK, YCbCr, and
    16-bit (I;16, I;16B), 32-bit integer (I: 8- or 16-bit data stored wide) and float (F)
    greyscale, which `Image.convert` would clip to white."""
    if image.mode in (*SIXTEEN_BIT, "I", "F"):
        grey = np.asarray(image, dtype=np.float64)
        if image.mode == "F" and (grey.min() < 0 or grey.max() > 255):  # an arbitrary range
            span = grey.max() - grey.min()
            grey = (grey - grey.min()) / span if span > 0 else np.zeros_like(grey)
        elif image.mode == "F" and grey.max() <= 1:  # already in [0, 1]
            pass
        else:
            wide = image.mode in SIXTEEN_BIT or grey.max() > 255
            grey = grey / (65535.0 if wide else 255.0)
        return np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=2), None
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float64) / 255
        alpha = rgba[..., 3]
        return rgba[..., :3], (alpha if alpha.min() < 1 else None)
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255, None


def as_photo(image: Image.Image) -> Image.Image:
    """An 8-bit RGB image with the right values from any mode, the right way up; a
    transparent background becomes white, as a viewer shows it."""
    image = oriented(image)
    if image.mode not in (*SIXTEEN_BIT, "I", "F", "RGBA", "LA", "PA") and (
        "transparency" not in image.info
    ):
        # Opaque 8-bit modes (RGB, L, P, CMYK, YCbCr, 1): `pixel_values` would take Pillow's
        # RGB conversion to floats and back, which returns the same bytes; skipping that
        # round trip makes decoding a 500×375 JPEG about 2× faster (a training worker's job).
        # A copy even for RGB: the caller may close the file the image was read from.
        return image.convert("RGB")
    rgb, alpha = pixel_values(image)
    if alpha is not None:
        rgb = rgb * alpha[..., None] + (1 - alpha[..., None])
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")


# Working sizes of the digit preparation (pixels on the longer side): the sheet for the
# background and ink estimate, and the digit's box before its final 20×20 (4× the final size,
# so a stroke's width can be measured and widened in whole pixels).
SHEET_SIDE = 512
BOX_SIDE = 80


def _resamplable(image: Image.Image) -> Image.Image:
    """`image` in a mode Pillow resamples by weighted averaging with the values' meaning kept:
    1-bit as 8-bit grey, palettes and colour-keyed transparency as RGB(A), the other 16-bit
    layouts as I;16 (Pillow cannot measure I;16B). Other modes are returned as they are."""
    keyed = "transparency" in image.info and image.mode in ("1", "L", "RGB", "P")
    if image.mode == "PA" or keyed:
        return image.convert("RGBA")
    if image.mode in ("1", "P"):
        return image.convert("L" if image.mode == "1" else "RGB")
    if image.mode in SIXTEEN_BIT and image.mode != "I;16":
        return Image.fromarray(np.asarray(image).astype("<u2"))
    return image


def within(image: Image.Image, side: int = SHEET_SIDE) -> Image.Image:
    """`image` at most `side` pixels on its longer side, resampled by Pillow in its own 8- or
    16-bit values (bilinear with antialiasing, the filter `_resize` applies to floats; RGBA
    premultiplied by Pillow, so transparent pixels do not bleed), so that no float copy of a
    larger image is ever made. A side of 1 stays 1 (too small to hold a digit, as before);
    an image that fits is returned as it is."""
    width, height = image.size
    scale = side / max(width, height)
    if scale >= 1:
        return image
    size = (max(min(width, 2), round(width * scale)), max(min(height, 2), round(height * scale)))
    return _resamplable(image).resize(size, Image.Resampling.BILINEAR)


def to_grey(image: Image.Image, side: int | None = SHEET_SIDE) -> np.ndarray:
    """Float array in [0, 1] from any mode (see `pixel_values`): luminance as ITU-R 601-2
    weighs it (Pillow's "L"); a drawing on a transparent sheet goes on a contrasting one.
    An image larger than `side` on its longer side is first reduced to it in its own
    values (`within`): the digit preparation works on a sheet of SHEET_SIDE pixels anyway,
    and a float64 copy of a 4096² image would take 400 MB (None: the full size)."""
    if side is not None:
        image = within(image, side)
    rgb, alpha = pixel_values(image)
    grey = rgb @ np.array([0.299, 0.587, 0.114])
    if alpha is not None:
        ink = (grey * alpha).sum() / max(alpha.sum(), 1e-9)
        background = 1.0 if ink < 0.5 else 0.0
        return grey * alpha + background * (1 - alpha)
    return grey


# MNIST's strokes are about 3 pixels wide in the 20×20 box: thinner ones are widened to
# this, in BOX_SIDE pixels (3.25 px × 4). Chosen so that a hairline 0, 1 or 7 lights as many
# pixels as the median MNIST test digit of its class does (tests/data/test_images.py).
STROKE_WIDTH = 13.0
THINNEST_STROKE = 11.0


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Area-averaged (antialiased) resize of a 2-D float array."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).float()[None, None]
    resized = F.interpolate(tensor, size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0, 0].numpy().astype(np.float64)


def _otsu(values: np.ndarray) -> float:
    """The threshold that best splits `values` in [0, 1] into two classes (Otsu 1979)."""
    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    mean = np.cumsum(counts * centres)
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean[-1] * weight / total - mean) ** 2 / (weight * (total - weight))
    return float(centres[np.nanargmax(between[:-1])]) if total else 0.5


def ink_of(grey: np.ndarray) -> np.ndarray:
    """How much ink each pixel holds, in [0, 1], whatever the paper and the light.

    The paper is estimated as what remains when strokes are removed (a morphological closing
    for dark ink, an opening for light ink, wider than any stroke), so a light gradient or a
    shadow across the sheet is divided out rather than taken for ink; then Otsu's threshold
    separates strokes from the paper's own grain, and the strokes are scaled to full contrast."""
    from scipy import ndimage

    height, width = grey.shape
    scale = min(1.0, SHEET_SIDE / max(height, width))
    if scale < 1:
        grey = _resize(grey, (max(2, round(height * scale)), max(2, round(width * scale))))
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    dark_ink = float(np.median(border)) >= 0.5
    window = max(9, min(grey.shape) // 5)
    if dark_ink:  # the paper: the brightest values around each pixel, smoothed
        paper = ndimage.uniform_filter(ndimage.grey_closing(grey, size=window), window // 2)
        ink = 1 - grey / np.maximum(paper, 1e-3)
    else:
        paper = ndimage.uniform_filter(ndimage.grey_opening(grey, size=window), window // 2)
        ink = grey - paper
    ink = np.clip(ink, 0, 1)
    if ink.max() < 0.05:
        return np.zeros_like(ink)
    ink = ink / ink.max()
    threshold = _otsu(ink)
    strokes = ink[ink > threshold]
    high = float(np.percentile(strokes, 90)) if strokes.size else 1.0
    floor = threshold / 2  # keeps the soft edges of a stroke, drops the paper's grain
    return np.clip((ink - floor) / max(high - floor, 1e-6), 0, 1)


def _widen_thin_strokes(box: np.ndarray) -> np.ndarray:
    """Strokes thinner than MNIST's (a fine pen on a large canvas) widened to its width.

    The width is read off the distance transform: a stroke w pixels wide has interior points
    about (w + 1) / 2 from its edge, so the 90th percentile of those distances gives w."""
    from scipy import ndimage

    solid = box > 0.5
    if not solid.any():
        return box
    distances = ndimage.distance_transform_edt(solid)[solid]
    width = 2 * float(np.percentile(distances, 90)) - 1
    if width >= THINNEST_STROKE:
        return box
    radius = max(1, round((STROKE_WIDTH - width) / 2))
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return ndimage.grey_dilation(box, footprint=(x * x + y * y) <= radius * radius)


def mnist_style(grey: np.ndarray, name: str = "image") -> torch.Tensor:
    """A grey image in [0, 1] → uint8 28×28 as MNIST was made: light ink on black at full
    contrast, strokes of MNIST's width, the digit's box scaled to 20×20 keeping its aspect
    ratio and centred by its centre of mass (LeCun's MNIST page)."""
    if min(grey.shape) < 2:
        raise UserError(
            f"{name}: {grey.shape[1]}×{grey.shape[0]} pixels is too small to hold a digit.",
            "image_too_small",
            width=str(grey.shape[1]),
            height=str(grey.shape[0]),
        )
    ink = ink_of(grey)
    rows, columns = np.nonzero(ink > 0.1)
    if rows.size == 0:
        raise UserError(
            f"{name}: the image is blank (no ink differs from its background).", "image_blank"
        )
    ink = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = ink.shape
    box_scale = BOX_SIDE / max(height, width)
    box = _resize(ink, (max(1, round(height * box_scale)), max(1, round(width * box_scale))))
    box = _widen_thin_strokes(box / max(box.max(), 1e-6))
    scale = 20.0 / max(box.shape)
    size = (max(1, round(box.shape[0] * scale)), max(1, round(box.shape[1] * scale)))
    box = torch.from_numpy(_resize(box, size)).float().clamp(0, 1)
    box = box / box.max().clamp_min(1e-6)  # MNIST's strokes reach full brightness
    total = box.sum()
    ys, xs = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    centre_y, centre_x = (ys * box).sum() / total, (xs * box).sum() / total
    top = int(round(13.5 - centre_y.item()))
    left = int(round(13.5 - centre_x.item()))
    top, left = min(max(top, 0), 28 - size[0]), min(max(left, 0), 28 - size[1])
    field = torch.zeros(28, 28)
    field[top : top + size[0], left : left + size[1]] = box
    return (field * 255).round().to(torch.uint8)


def load_digit(source: str | Path | bytes, name: str | None = None) -> torch.Tensor:
    """Read an image file and prepare it as MNIST was prepared: uint8 (28, 28).

    Memory stays near the decoded image's own size (at most 4 bytes a pixel; a large JPEG is
    decoded reduced, convnet/data/decoding.py): a uniform image is refused from its decoded
    values' extrema, and a larger one is reduced to the working sheet (SHEET_SIDE) in those
    values before any conversion to float."""
    image = open_image(source, name, keep=SHEET_SIDE)
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    if min(image.size) < 2:
        raise UserError(
            f"{label}: {image.size[0]}×{image.size[1]} pixels is too small to hold a digit.",
            "image_too_small",
            width=str(image.size[0]),
            height=str(image.size[1]),
        )
    if is_uniform(image):
        raise UserError(
            f"{label}: the image is blank (no ink differs from its background).", "image_blank"
        )
    orient_in_place(image)
    return mnist_style(to_grey(image), label)
