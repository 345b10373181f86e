"""Memory per request bound by the accepted image size: a PNG of up to 4096×4096 pixels
(the server's limit) is decoded in its own 8- or 16-bit values, refused as blank from their
extrema, and reduced to the digit preparation's 512-pixel sheet before any conversion to
float (docs/reliability.md states the bound)."""

from __future__ import annotations

import io
import subprocess
import sys
import tracemalloc

import pytest
import torch
from PIL import Image, ImageDraw

from convnet.data.images import SHEET_SIDE, load_digit
from convnet.serve.app import RequestError, digit_from_png

MIB = 2**20
SIDE = 4096  # the largest image the server accepts (MAX_IMAGE_SIDE)


def png(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def seven(side: int, mode: str = "L") -> Image.Image:
    """A 7 in strokes a twelfth of the side wide, light on black, in `mode`."""
    image = Image.new("L", (side, side), 0)
    points = [(side * 0.2, side * 0.15), (side * 0.8, side * 0.15), (side * 0.45, side * 0.85)]
    ImageDraw.Draw(image).line(points, fill=255, width=side // 12, joint="curve")
    if mode == "RGBA":  # the strokes' light as their opacity too
        return Image.merge("RGBA", [image, image, image, image])
    if mode == "P":  # a palette with black as the transparent colour
        return image.convert("P")
    return image.convert(mode)


def numpy_peak(function, *args) -> tuple[object, float]:
    """`function(*args)` (its result or the RequestError it raised) and the peak of the
    memory Python and NumPy allocated meanwhile, in MiB (tracemalloc sees every NumPy
    array: a float64 copy of a 4096² image would show as 128 MiB)."""
    tracemalloc.start()
    try:
        try:
            result = function(*args)
        except RequestError as error:
            result = error
        return result, tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


def test_a_blank_4096_png_is_refused_from_its_extrema_without_a_float_copy():
    body = png(Image.new("L", (SIDE, SIDE), 0))
    assert len(body) < 20_000  # inside the body limit by far: 16 MB of pixels in 16 kB
    refused, peak = numpy_peak(digit_from_png, body)
    assert isinstance(refused, RequestError) and refused.status == 422
    assert "blank" in refused.message("en")
    assert peak < 1, f"{peak:.1f} MiB allocated by Python and NumPy for a blank image"


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_a_4096_digit_is_reduced_before_any_float_copy(mode):
    """The digit preparation works on a sheet of SHEET_SIDE pixels: a larger image is reduced
    to it in its own 8-bit values, so the float arrays are those of a 512² image (2 MiB
    each), never of the 4096² one (128 MiB)."""
    image = seven(SIDE, mode)
    options = {"transparency": 0} if mode == "P" else {}
    digit, peak = numpy_peak(digit_from_png, png(image, **options))
    assert isinstance(digit, torch.Tensor) and digit.shape == (28, 28), digit
    assert peak < 24, f"{peak:.1f} MiB allocated by Python and NumPy for a {mode} image"
    same_at_sheet_size = load_digit(png(seven(SHEET_SIDE, mode), **options))
    assert (digit.int() - same_at_sheet_size.int()).abs().float().mean() < 8


MEMORY_PROBE = """
import io, resource, sys
from PIL import Image, ImageDraw
from convnet.serve.app import RequestError, digit_from_png

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

small = Image.new("L", (64, 64)); ImageDraw.Draw(small).line([(8, 8), (50, 50)], fill=255, width=6)
buffer = io.BytesIO(); small.save(buffer, format="PNG"); digit_from_png(buffer.getvalue())  # warm
body = sys.stdin.buffer.read()
before = peak()
try:
    digit_from_png(body)
except RequestError:
    pass
print(peak() - before)
"""


@pytest.mark.parametrize(
    ("kind", "bound_mib"),
    [("blank", 24), ("P with a transparent colour", 160)],  # docs/reliability.md
)
def test_memory_per_request_stays_within_its_bound(kind, bound_mib):
    """The process's peak resident memory while one 4096² PNG is read (Pillow's pixels
    included): a blank one is refused from its decoded 8-bit pixels; a palette image with
    a transparent colour, the mode that takes most (decoded, as RGBA, premultiplied for
    resampling), stays within the bound docs/reliability.md states."""
    if kind == "blank":
        body = png(Image.new("L", (SIDE, SIDE), 0))
    else:
        body = png(seven(SIDE, "P"), transparency=0)
    probe = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE],
        input=body,
        capture_output=True,
        timeout=300,
        check=True,
    )
    grew = float(probe.stdout.decode().strip())
    assert grew <= bound_mib, f"{kind}: the peak grew by {grew:.0f} MiB"
