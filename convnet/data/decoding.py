"""The one image decoder of `predict`, `evaluate`, `explain`, training on image files and the
web server: a file is judged by its content, not its name, and decoded within one pixel limit.

Every format Pillow opens is read (JPEG and JFIF, PNG, GIF's first frame, WebP, AVIF, TIFF,
BMP, …) and HEIC/HEIF, which phones write, through pillow-heif. The pixels an image declares
bound the memory its decoding takes, so they are checked before anything is decoded:

- up to FULL_DECODE_PIXELS an image is decoded as it is, so the images of ordinary data sets
  are read bit for bit as torchvision reads them;
- a larger JPEG is decoded reduced by Pillow's `draft` (the JPEG decoder's own DCT scaling,
  by 2, 4 or 8) to the smallest size that still gives the preparation the pixels it uses
  (`keep`: the shorter side it needs), so a 108-megapixel phone photo is read as 1,500×1,125;
- whatever is decoded may hold at most MAX_DECODED_PIXELS, and no image may declare more than
  MAX_DECLARED_PIXELS (Pillow's own decompression-bomb limit): beyond either it is refused in
  one paragraph, before decoding.
"""

from __future__ import annotations

import functools
import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from convnet.errors import UserError

Image.init()  # every format plugin Pillow has, before pillow-heif adds its own
try:  # HEIC/HEIF (phones' photos) as one more format Pillow opens
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF = True
except ImportError:  # pragma: no cover - a dependency; kept optional for minimal installs
    HEIF = False

# Up to 24 megapixels (a 6000×4000 camera photo; 72 MB as RGB) an image is decoded whole.
FULL_DECODE_PIXELS = 24_000_000
# The most pixels decoded for one image: 50 megapixels (a 48 MP phone's HEIC, 8064×6048,
# fits), at most 4 bytes a pixel, so 200 MB for the largest image any format decodes whole.
MAX_DECODED_PIXELS = 50_000_000
# Pillow refuses to open an image declaring more than twice its MAX_IMAGE_PIXELS (89,478,485)
# as a decompression bomb; convnet keeps that limit rather than changing Pillow's setting.
MAX_DECLARED_PIXELS = 2 * 89_478_485
# JPEG's DCT scalings, largest first (Pillow's `draft`).
JPEG_SCALES = (8, 4, 2)
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _label(source: str | Path | bytes, name: str | None) -> str:
    return name or (str(source) if not isinstance(source, bytes) else "image")


def _opened(source: str | Path | bytes, label: str) -> Image.Image:
    if isinstance(source, bytes):
        if not source:
            raise UserError(f"{label}: the file is empty.", "image_empty")
        return Image.open(io.BytesIO(source))
    path = Path(source)
    if path.is_dir():
        raise UserError(
            f"{label}: is a folder, not an image file. Give the images in it "
            f"(e.g. {path / '*.jpg'}); a folder of class folders is scored by "
            "'convnet evaluate RUN --data DIR'."
        )
    if path.exists() and not path.is_file():
        raise UserError(f"{label}: not a regular file (a device, a pipe or a socket).")
    if not path.is_file():
        raise UserError(f"{label}: no such file.")
    if path.stat().st_size == 0:
        raise UserError(f"{label}: the file is empty.", "image_empty")
    return Image.open(path)


def _reduced(image: Image.Image, keep: int | None, label: str) -> None:
    """Set `image` to decode reduced where it is large (JPEG: `draft`), and refuse one that
    would still decode to more than MAX_DECODED_PIXELS."""
    width, height = image.size
    if width * height > MAX_DECLARED_PIXELS:
        raise UserError(
            f"{label}: {width}×{height} pixels is more than {MAX_DECLARED_PIXELS:,}, Pillow's "
            "decompression-bomb limit. Refusing to decode it; reduce the image first.",
            "image_too_many_pixels", width=str(width), height=str(height),
            limit=MAX_DECLARED_PIXELS,
        )  # fmt: skip
    if width * height > FULL_DECODE_PIXELS and image.format == "JPEG":
        short = min(width, height)
        scale = next((s for s in JPEG_SCALES if short / s >= (keep or short)), 1)
        if scale > 1:
            # Pillow picks the largest scale that keeps at least the size asked for
            image.draft(image.mode, (width // scale, height // scale))
    width, height = image.size
    if width * height > MAX_DECODED_PIXELS:
        kind = image.format or "image"
        raise UserError(
            f"{label}: {width}×{height} pixels is more than {MAX_DECODED_PIXELS:,}, the most "
            f"convnet decodes of one image (a {kind} is decoded whole; only a JPEG can be read "
            "reduced). Refusing to decode it; reduce the image first.",
            "image_too_many_pixels", width=str(width), height=str(height),
            limit=MAX_DECODED_PIXELS,
        )  # fmt: skip


def open_image(
    source: str | Path | bytes, name: str | None = None, keep: int | None = None
) -> Image.Image:
    """Decode an image file (or its bytes), in its own mode and size or reduced where it is
    larger than FULL_DECODE_PIXELS (`keep`: the shorter side the caller needs at least; a
    JPEG is decoded no smaller); the first frame of an animation. A UserError in one
    paragraph for an empty, unreadable, truncated or too large file."""
    label = _label(source, name)
    try:
        with warnings.catch_warnings():
            # our limits are checked below; Pillow's other warnings (palette transparency,
            # odd EXIF) are about files it reads anyway
            warnings.simplefilter("ignore")
            image = _opened(source, label)
            _reduced(image, keep, label)
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # first frame of an animation
                image.load()
                frame = image.copy()  # and the file closed: animations keep theirs open
                image.close()
                return frame
            image.load()
    except UserError:
        raise
    except Image.DecompressionBombError:
        raise UserError(
            f"{label}: declares more than {MAX_DECLARED_PIXELS:,} pixels, Pillow's "
            "decompression-bomb limit. Refusing to decode it.",
            "image_too_many_pixels_declared",
        ) from None
    except UnidentifiedImageError:
        heif = "" if HEIF else " (HEIC needs the pillow-heif package)"
        raise UserError(
            f"{label}: not a readable image (unknown or broken format){heif}.", "image_unreadable"
        ) from None
    except Exception as error:  # a damaged file: each format's decoder fails in its own way
        # (OSError, ValueError, SyntaxError, EOFError; TypeError from TIFF, RuntimeError from
        # AVIF and HEIF, found by tools/fuzz.py), all the same to the user
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{label}: the image is corrupt or truncated ({reason}).",
            "image_corrupt",
            detail=reason,
        ) from None
    return image


def identify(path: Path) -> str | None:
    """The format of the image in `path` from its content (its header only: nothing is
    decoded), or None when Pillow reads no image there."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                return image.format or "image"
    except Exception:  # no image Pillow can read, however its decoders say so
        return None


@functools.cache
def image_extensions() -> tuple[str, ...]:
    """The file name endings of every format Pillow (and pillow-heif) opens, lower case: the
    files a folder scan takes for images without opening them first."""
    readable = set(Image.OPEN)
    return tuple(
        sorted(ending for ending, kind in Image.registered_extensions().items() if kind in readable)
    )
