"""Hypothesis strategies: image files, valid and mutated, for the fuzz-style tests of the image
loader and the web server."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import strategies as st
from PIL import Image

ENCODINGS = [
    ("L", "PNG"),
    ("RGB", "PNG"),
    ("RGBA", "PNG"),
    ("LA", "PNG"),
    ("1", "PNG"),
    ("P", "PNG"),
    ("I;16", "PNG"),
    ("CMYK", "JPEG"),
    ("RGB", "GIF"),
    ("L", "BMP"),
    ("F", "TIFF"),
    ("CMYK", "TIFF"),
]


def encoded(shape: tuple[int, int], pixels: bytes, encoding: tuple[str, str]) -> bytes:
    """`pixels` as a grey image of `shape`, converted to a mode and saved in a format."""
    mode, image_format = encoding
    array = np.frombuffer(pixels, dtype=np.uint8).reshape(shape)
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, format=image_format)
    return buffer.getvalue()


valid_images = st.tuples(st.integers(1, 40), st.integers(1, 40)).flatmap(
    lambda shape: st.builds(
        encoded,
        st.just(shape),
        st.binary(min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]),
        st.sampled_from(ENCODINGS),
    )
)
image_bytes = (
    st.one_of(st.binary(max_size=300), valid_images, valid_images)
    .flatmap(
        lambda data: st.tuples(
            st.just(data),
            st.integers(0, len(data) + 1),
            st.lists(
                st.tuples(st.integers(0, max(len(data) - 1, 0)), st.integers(0, 255)), max_size=4
            ),
        )
    )
    .map(lambda item: _mutate(*item))
)


def _mutate(data: bytes, cut: int, changes: list[tuple[int, int]]) -> bytes:
    """Truncate at `cut` (the whole file when cut ≥ its length) and overwrite a few bytes."""
    mutated = bytearray(data[:cut] if cut < len(data) else data)
    for position, value in changes:
        if position < len(mutated):
            mutated[position] = value
    return bytes(mutated)
