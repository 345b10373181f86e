"""Digits as people write and photograph them, drawn by the tests (no data set): strokes of
any pen width on a canvas of any size, paper with a lighting gradient or a soft shadow, and
EXIF orientation tags.

Each digit is a few strokes in unit coordinates (x to the right, y down), sampled densely and
drawn as a polyline with round joints, the way a pen moves.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float, steps: int = 48):
    """Points of an elliptical arc; angles in degrees, 0 = right, 90 = down."""
    return [
        (cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
        for a in np.linspace(start, end, steps)
    ]


STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_arc(0.5, 0.5, 0.17, 0.28, 0, 360)],
    1: [[(0.42, 0.3), (0.52, 0.2), (0.52, 0.8)]],
    2: [_arc(0.5, 0.36, 0.16, 0.14, 190, 370) + [(0.33, 0.8), (0.7, 0.8)]],
    3: [_arc(0.47, 0.35, 0.15, 0.14, 200, 450), _arc(0.47, 0.64, 0.17, 0.15, 270, 520)],
    4: [[(0.62, 0.8), (0.62, 0.2), (0.32, 0.6), (0.74, 0.6)]],
    5: [[(0.68, 0.2), (0.4, 0.2), (0.37, 0.47)] + _arc(0.49, 0.62, 0.17, 0.17, 230, 500)],
    6: [_arc(0.72, 0.62, 0.36, 0.44, 230, 180), _arc(0.5, 0.63, 0.16, 0.16, 0, 360)],
    7: [[(0.32, 0.2), (0.7, 0.2), (0.45, 0.8)]],
    8: [_arc(0.5, 0.34, 0.13, 0.13, 0, 360), _arc(0.5, 0.64, 0.16, 0.16, 0, 360)],
    9: [_arc(0.5, 0.37, 0.15, 0.15, 0, 360), [(0.65, 0.37), (0.6, 0.8)]],
}


def draw_digit(
    digit: int,
    canvas: int = 600,
    pen: float = 20,
    paper: int = 235,
    ink: int = 40,
    noise: float = 4.0,
    seed: int = 0,
) -> np.ndarray:
    """A grey (canvas × canvas) uint8 drawing: dark ink on light paper with a little noise."""
    image = Image.new("L", (canvas, canvas), paper)
    draw = ImageDraw.Draw(image)
    width = max(1, round(pen))
    for stroke in STROKES[digit]:
        points = [(x * canvas, y * canvas) for x, y in stroke]
        draw.line(points, fill=ink, width=width, joint="curve")
        radius = width / 2  # round pen ends
        for x, y in (points[0], points[-1]):
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=ink)
    pixels = np.asarray(image, dtype=np.float64)
    pixels += np.random.default_rng(seed).normal(0, noise, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def light_falloff(pixels: np.ndarray, falloff: float, angle: float = 30.0) -> np.ndarray:
    """Light that falls off linearly across the sheet by `falloff` (0.35 = 35%)."""
    height, width = pixels.shape
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    along = x * math.cos(math.radians(angle)) + y * math.sin(math.radians(angle))
    along = (along - along.min()) / (along.max() - along.min())
    return np.clip(pixels * (1 - falloff * along), 0, 255).astype(np.uint8)


def corner_shadow(
    pixels: np.ndarray, depth: float = 0.45, corner: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """A soft shadow (a hand, a phone) over one corner, darkening it by up to `depth`."""
    height, width = pixels.shape
    y, x = np.mgrid[0:height, 0:width]
    cy, cx = corner[0] * (height - 1), corner[1] * (width - 1)
    distance = np.hypot((y - cy) / height, (x - cx) / width)
    shade = depth * np.clip(1 - distance / 0.55, 0, 1) ** 1.5
    return np.clip(pixels * (1 - shade), 0, 255).astype(np.uint8)


# EXIF orientation n: how the stored pixels must be turned to be seen upright; the inverse
# turns an upright image into what a camera would store with that tag.
_STORED = {
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def with_orientation(upright: Image.Image, orientation: int, format: str = "PNG") -> bytes:
    """The file a camera writes for `upright` seen through EXIF `orientation` (1–8)."""
    stored = upright
    for step in _STORED.get(orientation, []):
        stored = stored.transpose(step)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    stored.save(buffer, format=format, exif=exif.tobytes())
    return buffer.getvalue()


# The drawings the tests and benchmarks/digit_reading.py read: a digit (0–9) → pixels.
CONDITIONS = {
    "marker 60 px on a 600 px canvas": lambda d: draw_digit(d, 600, 60),
    "pen 20 px on 600": lambda d: draw_digit(d, 600, 20),
    "pen 6 px on 600": lambda d: draw_digit(d, 600, 6),
    "pen 3 px on 400": lambda d: draw_digit(d, 400, 3),
    "pen 2 px on 600": lambda d: draw_digit(d, 600, 2),
    "pen 1 px on 800": lambda d: draw_digit(d, 800, 1),
    "light falls off 20%": lambda d: light_falloff(draw_digit(d, 600, 12), 0.20, angle=0),
    "light falls off 35%": lambda d: light_falloff(draw_digit(d, 600, 12), 0.35, angle=60),
    "shadow over the top left": lambda d: corner_shadow(draw_digit(d, 600, 12), 0.45, (0, 0)),
    "shadow over the bottom right": lambda d: corner_shadow(draw_digit(d, 600, 12), 0.45, (1, 1)),
    "pen 2 px, falloff 30% and a shadow": lambda d: corner_shadow(
        light_falloff(draw_digit(d, 700, 2), 0.3), 0.4, (1, 0)
    ),
}
