"""Turning a user's image file into an MNIST-style digit.

MNIST was made this way (LeCun's MNIST page): each digit's bounding box was scaled to fit
20×20 keeping its aspect ratio, then placed in a 28×28 field so that its centre of mass
sits at the centre. Doing the same to a photo or a drawing makes it look like the data
the model learned from, whatever its size, colour or polarity.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.nn import functional as F

from convnet.errors import UserError

MAX_PIXELS = 40_000_000  # refuse larger images before decoding them (decompression bombs)
MAX_FILE_BYTES = 50_000_000


def open_image(source: str | Path | bytes, name: str | None = None) -> Image.Image:
    """Decode an image file (or its bytes) into a grey float image, refusing bad files clearly."""
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    if isinstance(source, bytes):
        data = source
    else:
        path = Path(source)
        if not path.is_file():
            raise UserError(f"{label}: no such file.")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise UserError(f"{label}: file is larger than {MAX_FILE_BYTES:,} bytes; refusing.")
        data = path.read_bytes()
    if not data:
        raise UserError(f"{label}: the file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise UserError(
                    f"{label}: {width}×{height} pixels is more than {MAX_PIXELS:,}. Refusing to decode it."
                )
            image.seek(0)  # first frame of an animation
            image.load()
    except UserError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UserError(f"{label}: {error} Refusing to decode it.") from None
    except UnidentifiedImageError:
        raise UserError(f"{label}: not a readable image (unknown or broken format).") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise UserError(f"{label}: the image is corrupt or truncated ({error}).") from None
    return image


def to_grey(image: Image.Image) -> np.ndarray:
    """Float array in [0, 1] from any PIL mode (1, L, P, RGB(A), CMYK, I;16, F, …)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return np.clip(array / top, 0, 1)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = array.max() - array.min()
        return (array - array.min()) / span if span > 0 else np.zeros_like(array)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float64) / 255
        grey = np.asarray(rgba.convert("L"), dtype=np.float64) / 255
        if alpha.min() < 1:  # a drawing on a transparent sheet: put it on a contrasting one
            ink = (grey * alpha).sum() / max(alpha.sum(), 1e-9)
            background = 1.0 if ink < 0.5 else 0.0
            return grey * alpha + background * (1 - alpha)
        return grey
    return np.asarray(image.convert("L"), dtype=np.float64) / 255


def mnist_style(grey: np.ndarray, name: str = "image") -> torch.Tensor:
    """A grey image in [0, 1] → uint8 28×28, light ink on black, 20×20 box, centred by mass."""
    if min(grey.shape) < 2:
        raise UserError(
            f"{name}: {grey.shape[1]}×{grey.shape[0]} pixels is too small to hold a digit."
        )
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    background = float(np.median(border))
    ink = grey - background if background < 0.5 else background - grey  # light ink on dark
    ink = np.clip(ink, 0, None)
    if ink.max() < 0.05:
        raise UserError(f"{name}: the image is blank (no ink differs from its background).")
    ink = ink / ink.max()
    rows, columns = np.nonzero(ink > 0.1)
    ink = ink[rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]
    height, width = ink.shape
    scale = 20.0 / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    box = F.interpolate(
        torch.from_numpy(ink).float()[None, None], size=size, mode="bilinear",
        antialias=True, align_corners=False,
    )[0, 0].clamp(0, 1)  # fmt: skip
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
    """Read an image file and prepare it as MNIST was prepared: uint8 (28, 28)."""
    image = open_image(source, name)
    image = ImageOps.exif_transpose(image) if image.mode != "I;16" else image
    label = name or (str(source) if not isinstance(source, bytes) else "image")
    return mnist_style(to_grey(image), label)


def load_photo(source: str | Path | bytes, size: tuple[int, int, int]) -> torch.Tensor:
    """A photo as torchvision's ImageNet evaluation sees it: shorter side resized to
    size/0.875 (256 for 224), centre crop; float (C, H, W) in [0, 1]."""
    from torchvision.transforms import functional as TF

    image = open_image(source).convert("RGB" if size[0] == 3 else "L")
    image = TF.resize(TF.pil_to_tensor(image), round(size[1] / 0.875), antialias=True)
    return TF.center_crop(image, [size[1], size[2]]).float() / 255
