"""The two input kinds tools/fuzz.py has always thrown, each a maker of valid inputs, one of
hostile ones and a `try_…` that feeds one to convnet and returns "accepted" or "rejected"
(a UserError), raising anything else: IDX files for the IDX reader
(`convnet.data.idx.idx_to_tensor`), raw and gzip; and digit images for the image loader
(`convnet.data.images.load_digit`) in many formats and modes, with headers that declare
absurd sizes; also the PNGs the web page's canvas sends. tools/fuzz_inputs.py holds the
other kinds."""

from __future__ import annotations

import gzip
import io
import random
import struct
import zlib

import numpy as np
import torch
from PIL import Image

from convnet.data.idx import IDX_TYPES, encode_idx, idx_to_tensor
from convnet.data.images import load_digit
from convnet.errors import UserError

# Integers at the formats' limits: sizes, counts and fields a mutation writes.
BOUNDARY_INTEGERS = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    28,
    255,
    256,
    4096,
    4097,
    20_000,
    65_535,
    65_536,
    2**31 - 1,
    2**31,
    2**32 - 1,
]

# --- IDX files -----------------------------------------------------------------------------


def valid_idx(rng: random.Random) -> bytes:
    dtype = rng.choice(list(IDX_TYPES.values())).newbyteorder("=")
    shape = [rng.randint(0 if rng.random() < 0.05 else 1, 6) for _ in range(rng.randint(1, 4))]
    count = int(np.prod(shape))
    if dtype.kind == "f":
        array = np.array(
            [
                rng.choice([0.0, -1.5, 1e30, float("nan"), float("inf"), rng.random()])
                for _ in range(count)
            ],
            dtype=dtype,
        )
    else:
        info = np.iinfo(dtype)
        array = np.array([rng.randint(int(info.min), int(info.max)) for _ in range(count)], dtype)
    raw = encode_idx(array.reshape(shape))
    return gzip.compress(raw, mtime=0) if rng.random() < 0.2 else raw


def hostile_idx(rng: random.Random) -> bytes:
    """Headers that lie: huge or zero dimensions, many dimensions, unknown types, short data."""
    type_code = rng.choice([*IDX_TYPES, 0x00, 0x07, 0x0A, 0xFF])
    ndim = rng.choice([0, 1, 2, 3, 4, 5, 16, 255])
    sizes = [rng.choice(BOUNDARY_INTEGERS) for _ in range(min(ndim, 8))]
    header = bytes([0, 0, type_code, ndim]) + b"".join(s.to_bytes(4, "big") for s in sizes)
    raw = header + rng.randbytes(rng.choice([0, 1, 10, 100, 1000]))
    if rng.random() < 0.2:
        raw = gzip.compress(raw, mtime=0)
        raw = raw[: rng.randint(2, len(raw))] if rng.random() < 0.5 else raw
    return raw


def try_idx(data: bytes) -> str:
    try:
        tensor = idx_to_tensor(data, "fuzz")
    except UserError:
        return "rejected"
    assert isinstance(tensor, torch.Tensor)
    return "accepted"


# --- images --------------------------------------------------------------------------------

IMAGE_ENCODINGS = [
    ("L", "PNG"),
    ("RGB", "PNG"),
    ("RGBA", "PNG"),
    ("LA", "PNG"),
    ("P", "PNG"),
    ("1", "PNG"),
    ("I;16", "PNG"),
    ("L", "JPEG"),
    ("RGB", "JPEG"),
    ("CMYK", "JPEG"),
    ("P", "GIF"),
    ("RGB", "BMP"),
    ("1", "BMP"),
    ("F", "TIFF"),
    ("I", "TIFF"),
    ("CMYK", "TIFF"),
    ("RGB", "WEBP"),
    ("RGBA", "ICO"),
    ("L", "PPM"),
    ("RGB", "TGA"),
]


def valid_image(rng: random.Random) -> bytes:
    """A small picture (noise, a stroke, or a flat field) in a random mode and format."""
    width, height = rng.randint(1, 64), rng.randint(1, 64)
    kind = rng.randrange(3)
    if kind == 0:
        array = np.frombuffer(rng.randbytes(width * height), np.uint8).reshape(height, width)
    else:
        array = np.full((height, width), rng.choice([0, 255]), np.uint8)
        if kind == 1:
            row = rng.randrange(height)
            array[row, :] = 255 - array[row, 0]
    mode, image_format = rng.choice(IMAGE_ENCODINGS)
    image = Image.fromarray(array).convert(mode)
    buffer = io.BytesIO()
    if image_format == "GIF" and rng.random() < 0.5:  # an animation of two frames
        image.save(buffer, format="GIF", save_all=True, append_images=[image.transpose(0)])
    else:
        image.save(buffer, format=image_format)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def hostile_image(rng: random.Random) -> bytes:
    """Headers declaring absurd sizes or impossible formats over almost no data."""
    width, height = rng.choice(BOUNDARY_INTEGERS), rng.choice(BOUNDARY_INTEGERS)
    kind = rng.randrange(4)
    if kind == 0:  # PNG: any size, bit depth and colour type; a little compressed data
        header = struct.pack(
            ">IIBBBBB",
            width,
            height,
            rng.choice([1, 2, 4, 8, 16, 3]),
            rng.choice([0, 2, 3, 4, 6, 5]),
            0,
            0,
            rng.choice([0, 1]),
        )
        idat = zlib.compress(bytes(rng.choice([0, 64, 10_000])))
        chunks = [png_chunk(b"IHDR", header), png_chunk(b"IDAT", idat), png_chunk(b"IEND", b"")]
        if rng.random() < 0.3:  # a palette, or an acTL chunk claiming an animation
            chunks.insert(1, png_chunk(b"PLTE", rng.randbytes(3 * rng.randint(0, 300))))
        return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)
    if kind == 1:  # GIF: a logical screen and one image of any size
        screen = struct.pack("<HHBBB", width % 65536, height % 65536, 0, 0, 0)
        image = b"," + struct.pack("<HHHHB", 0, 0, width % 65536, height % 65536, 0)
        return b"GIF89a" + screen + image + b"\x02\x02\x44\x01\x00;"
    if kind == 2:  # BMP: negative (top-down) or huge heights, any bit count
        info = struct.pack(
            "<IiiHHIIiiII",
            40,
            width % 2**31,
            rng.choice([height % 2**31, -height % 2**31 - 2**31]),
            1,
            rng.choice([1, 4, 8, 16, 24, 32, 0, 64]),
            0,
            0,
            0,
            0,
            0,
            0,
        )
        return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + rng.randbytes(16)
    # JPEG: a start-of-frame with any size, then nothing useful
    frame = struct.pack(">BHHB", 8, height % 65536, width % 65536, 1) + b"\x01\x11\x00"
    return (
        b"\xff\xd8"
        + b"\xff\xc0"
        + struct.pack(">H", len(frame) + 2)
        + frame
        + rng.randbytes(rng.randint(0, 64))
        + b"\xff\xd9"
    )


def try_image(data: bytes) -> str:
    try:
        digit = load_digit(data, "fuzz")
    except UserError:
        return "rejected"
    assert digit.shape == (28, 28) and digit.dtype == torch.uint8, (digit.shape, digit.dtype)
    return "accepted"


def stroke_png(rng: random.Random) -> bytes:
    """A digit-like drawing, light strokes on black, as the page's canvas sends it."""
    from PIL import ImageDraw

    size = rng.choice([28, 64, 200, 280])
    image = Image.new("L", (size, size), 0)
    points = [(rng.randrange(size), rng.randrange(size)) for _ in range(rng.randint(2, 5))]
    ImageDraw.Draw(image).line(points, fill=255, width=max(2, size // 12))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def valid_image_png(rng: random.Random) -> bytes:
    """The server takes PNG only: mostly PNGs, sometimes another format to be refused."""
    while True:
        data = valid_image(rng)
        if data.startswith(b"\x89PNG") or rng.random() < 0.2:
            return data
