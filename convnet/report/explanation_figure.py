"""The overlay `convnet explain` writes: the image the model saw, its heat map over it, and
the prediction in the title."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from convnet.files import atomic_write_bytes
from convnet.report.figure_fonts import drawn_in_language

HEAT_OPACITY = 0.6  # at the map's peak; the heat fades out where the map is 0


@drawn_in_language
def write_overlay(
    path: Path | str, image: torch.Tensor, heat: torch.Tensor, title: str, lang: str = "en"
) -> Path:
    """PNG of `image` (C, H, W, pixels in [0, 1]; grey or RGB) with `heat` (H, W, in [0, 1])
    drawn over it in a colour scale whose opacity follows the heat, written atomically; the
    title is drawn with a font that has `lang`'s letters. A colour bar gives the scale: 1 is
    where the method found the most."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.figure import Figure

    pixels = image.detach().float().clamp(0, 1).permute(1, 2, 0).numpy()
    values = heat.detach().float().clamp(0, 1).numpy()
    colours = colormaps["jet"](values)
    colours[..., 3] = HEAT_OPACITY * values
    figure = Figure(figsize=(4.2, 3.9))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot()
    if pixels.shape[2] == 1:
        axis.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        axis.imshow(pixels, interpolation="nearest")
    axis.imshow(colours, interpolation="bilinear")
    axis.set_title(title, fontsize=10)
    axis.set_axis_off()
    scale = ScalarMappable(cmap="jet")
    scale.set_clim(0, 1)
    figure.colorbar(scale, ax=axis, fraction=0.046, pad=0.04)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
