"""Image files and bytes the tests make: MNIST digits as a photo would show them, PNG headers
of a decompression bomb, one picture stored in every pixel mode Pillow opens."""

from __future__ import annotations

import numpy as np
from PIL import Image


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels but carries almost no data (a bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def digit_png(mnist_test, index, path):
    """A real test digit, 4× larger, dark ink on a light RGB background, as a photo would be."""
    digit = np.kron(mnist_test.images[index].numpy(), np.ones((4, 4), dtype=np.uint8))
    Image.fromarray(255 - digit).convert("RGB").save(path)
    return path


def _in_mode(picture: Image.Image, mode: str) -> tuple[Image.Image, str]:
    """`picture` stored in pixel `mode`, and a format that keeps that mode."""
    grey = np.asarray(picture.convert("L"))
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257), "PNG"
    if mode == "I;16B":
        return Image.frombytes("I;16B", picture.size, (grey.astype(">u2") * 257).tobytes()), "TIFF"
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 257), "TIFF"
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255), "TIFF"
    if mode in ("LA", "PA", "RGBA"):
        return picture.convert(mode), "TIFF" if mode == "PA" else "PNG"
    return picture.convert(mode), {"CMYK": "TIFF", "YCbCr": "TIFF"}.get(mode, "PNG")


MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I", "F", "YCbCr"]


# Formats a folder of photos holds beside JPEG and PNG, as (file name, Pillow format, save
# options): phones write HEIC (named .HEIC), browsers save AVIF and WebP, some cameras JFIF.
ODD_FORMATS = [
    ("photo.avif", "AVIF", {}),
    ("photo.jfif", "JPEG", {}),
    ("photo.HEIC", "HEIF", {}),
    ("photo.webp", "WEBP", {}),
    ("photo.tiff", "TIFF", {}),
    ("photo.bmp", "BMP", {}),
    ("photo.gif", "GIF", {}),
    ("photo-png.dat", "PNG", {}),  # named as no image format: recognised by its content
]


def colour_photo(colour: tuple[int, int, int] = (200, 40, 30), size=(64, 48)) -> Image.Image:
    """A plain photo of one colour with a darker band (lossy formats keep its mean colour)."""
    picture = Image.new("RGB", size, colour)
    picture.paste(tuple(value // 2 for value in colour), (0, 0, size[0], size[1] // 4))
    return picture


def save_as(picture: Image.Image, path, kind: str, **options) -> None:
    """`picture` saved in format `kind`; a GIF as a two-frame animation, the first `picture`."""
    if kind == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    if kind == "GIF":
        picture.save(path, "GIF", save_all=True, append_images=[Image.new("RGB", picture.size)])
        return
    picture.save(path, kind, **options)
