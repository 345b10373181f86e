"""Where a network looked: attribution maps from Captum, PyTorch's interpretability library.

Three methods, each giving one non-negative map per image at the input's resolution, scaled
so that its largest value is 1 (all zeros where nothing counted):

- `gradcam` — Grad-CAM (Selvaraju et al. 2017, captum.attr.LayerGradCam): a convolution
  layer's feature maps weighted by the mean gradient of the class score over each map,
  summed, kept where positive, upsampled bilinearly to the input. Only for networks with
  convolutions; the layer is the registry's `explain_layer` or the last convolution whose
  maps are at least 2×2 (C3 for LeNet-5: 10×10 maps).
- `saliency` — the gradient's magnitude at each input pixel (Simonyan et al. 2014,
  captum.attr.Saliency), the largest over channels, averaged over 16 noisy copies of the
  image (SmoothGrad, as captum.attr.NoiseTunnel computes it, with the noise drawn from a
  generator of the caller's, never PyTorch's global one: the web server explains requests
  in several threads at once, and each answer must not depend on the others): any network.
- `occlusion` — how much the class score falls when a square of the image is painted
  background (Zeiler & Fergus 2014, captum.attr.Occlusion); the square is about a sixth of
  the input's side, slid by half of that: any network.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from convnet.data.transforms import normalize
from convnet.engine.export import plain_model
from convnet.errors import UserError
from convnet.models.registry import ModelSpec

METHODS = ("gradcam", "saliency", "occlusion")
# Saliency is averaged over copies of the image with Gaussian noise of this σ (pixel units)
# added, SmoothGrad (Smilkov et al. 2017): one gradient is speckled, the mean shows the shape.
SMOOTHGRAD_SAMPLES, SMOOTHGRAD_NOISE = 16, 0.1


@dataclass
class Explanation:
    """Maps (N, H, W) in [0, 1] at the input's resolution; per image the predicted class,
    its probability, and the class explained (`targets`: the predicted one unless asked)."""

    maps: torch.Tensor
    predicted: torch.Tensor
    probabilities: torch.Tensor
    targets: torch.Tensor
    method: str
    layer: str | None = None


# Per model explained (the server explains with the same two models for every request): the
# measured cell_centres of each (layer, input size).
_CENTRES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _PixelsIn(nn.Module):
    """The model with its normalization in front: attributions are taken on pixels in [0, 1]."""

    def __init__(self, model: nn.Module, normalization: tuple) -> None:
        super().__init__()
        self.model, self.normalization = model, normalization

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(pixels, *self.normalization))


def attributable(model: nn.Module) -> nn.Module:
    """The plain form of `model` (convnet.engine.export.plain_model) with every ReLU out of
    place: Captum's hooks read layer outputs that an in-place ReLU would overwrite."""
    plain = plain_model(model)
    for module in plain.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    return plain


def convolution_layer(model: nn.Module, spec: ModelSpec | None, input_size: tuple) -> str:
    """The name of the layer Grad-CAM weighs: the registry's `explain_layer` where set, else
    the last convolution whose output is at least 2×2 on `input_size` (C, H, W). UserError
    for a network without convolutions."""
    if spec is not None and spec.explain_layer:
        return spec.explain_layer
    sides: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(
            lambda _module, _inputs, output, name=name: sides.setdefault(name, output.shape[-2:])
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_size))
    finally:
        for hook in hooks:
            hook.remove()
    usable = [name for name, side in sides.items() if min(side) >= 2]
    if not usable:
        name = spec.name if spec is not None else "this model"
        raise UserError(
            f"{name} has no convolution layer, so Grad-CAM has no feature maps to weigh; "
            "use --method saliency (or occlusion) instead."
        )
    return usable[-1]


def cell_centres(network: nn.Module, layer: nn.Module, input_size: tuple) -> torch.Tensor:
    """Where `layer`'s output cells look, in input pixels: (2, 2) = for rows and columns,
    the centre of cell 0's receptive field and the step from one cell to the next.

    Measured, not assumed: the gradient of two middle cells' outputs with respect to a
    random input marks their receptive fields. Valid convolutions shrink the maps, so the
    cells of LeNet-5's C3 (10×10 on 32×32) look at pixels 6.5, 8.5, …, 24.5; stretching the
    map over the whole input, as plain resizing does, would move a heat spot by up to 6 px.
    Where a field reaches the input's edge (deep layers of padded networks) it cannot be
    measured this way, and plain resizing's geometry is used: padding keeps maps centred."""
    captured = []
    hook = layer.register_forward_hook(lambda _module, _inputs, output: captured.append(output))
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, *input_size, generator=generator).requires_grad_(True)
    try:
        network(pixels)
    finally:
        hook.remove()
    output = captured[0]
    centres = torch.zeros(2, 2)
    for axis, length in enumerate(output.shape[-2:]):
        side = input_size[1 + axis]
        step, first = side / length, (side / length - 1) / 2  # plain resizing's geometry
        if length >= 2:  # two middle cells, the least likely to have fields cut by an edge
            middle, found = length // 2 - 1, []
            for cell in (middle, middle + 1):
                index = [0, slice(None), slice(None), slice(None)]
                index[2 + axis] = cell
                (gradient,) = torch.autograd.grad(
                    output[tuple(index)].sum(), pixels, retain_graph=True
                )
                field = gradient.abs().sum(dim=(0, 1, 3 - axis)).nonzero().flatten()
                if len(field) and field.min() > 0 and field.max() < side - 1:  # not cut
                    found.append((field.min() + field.max()).item() / 2)
            if len(found) == 2:
                step = found[1] - found[0]
                first = found[0] - middle * step
        centres[axis] = torch.tensor([first, step])
    return centres


def to_input_grid(maps: torch.Tensor, centres: torch.Tensor, size: tuple) -> torch.Tensor:
    """Coarse maps (N, h, w) resampled bilinearly at each input pixel (N, H, W), each cell
    placed where it looks (cell_centres); it fades to 0 within one cell beyond the outer ones."""
    height, width = size
    rows = (torch.arange(height, dtype=torch.float32) - centres[0, 0]) / centres[0, 1]
    columns = (torch.arange(width, dtype=torch.float32) - centres[1, 0]) / centres[1, 1]
    # grid_sample's coordinates with align_corners=True: −1 is cell 0, +1 the last cell
    y = rows / max(maps.shape[1] - 1, 1) * 2 - 1
    x = columns / max(maps.shape[2] - 1, 1) * 2 - 1
    grid = torch.stack(torch.meshgrid(y, x, indexing="ij")[::-1], dim=-1)
    grid = grid[None].expand(len(maps), -1, -1, -1)
    return F.grid_sample(
        maps[:, None].float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    )[:, 0]


def occlusion_window(side: int) -> tuple[int, int]:
    """(window, stride) in pixels for an input `side` pixels wide: a sixth of it, at least
    3, slid by half the window (32 px: 5, 2; 224 px: 37, 18)."""
    window = max(3, side // 6)
    return window, max(1, window // 2)


def explain(
    model: nn.Module,
    pixels: torch.Tensor,
    normalization: tuple,
    method: str,
    *,
    target: int | None = None,
    layer: str | None = None,
    spec: ModelSpec | None = None,
    generator: torch.Generator | None = None,
) -> Explanation:
    """Explain `model`'s outputs on `pixels` (N, C, H, W) in [0, 1] by `method` (see
    METHODS), for class `target` or else each image's predicted class. `layer` (Grad-CAM)
    defaults to convolution_layer(…). Saliency's noise comes from `generator` (default: a
    new one seeded 0, the same noise every time: a map that does not flicker as the page
    redraws it); nothing here draws from PyTorch's global generator. UserError for an
    unknown method or, with Grad-CAM, a model without convolutions."""
    from captum.attr import LayerGradCam, Occlusion, Saliency

    if method not in METHODS:
        raise UserError(f"Unknown method '{method}'. Methods: {', '.join(METHODS)}.")
    network = attributable(model)
    if method == "gradcam" and layer is None:
        layer = convolution_layer(network, spec, tuple(pixels.shape[1:]))
    wrapped = _PixelsIn(network, normalization).eval()
    pixels = pixels.float()
    with torch.no_grad():
        probabilities = wrapped(pixels).softmax(dim=1)
    confidence, predicted = probabilities.max(dim=1)
    if target is not None and not 0 <= target < probabilities.shape[1]:
        raise UserError(f"Class {target} is not one of the model's {probabilities.shape[1]}.")
    targets = predicted if target is None else torch.full_like(predicted, target)
    inputs = pixels.clone().requires_grad_(True)
    if method == "gradcam":
        module = wrapped.model.get_submodule(layer)
        coarse = LayerGradCam(wrapped, module).attribute(
            inputs, target=targets, relu_attributions=True
        )
        key = (layer, tuple(pixels.shape[1:]))
        known = _CENTRES.setdefault(model, {})
        if key not in known:  # the geometry of the architecture: measured once per model
            known[key] = cell_centres(wrapped, module, key[1])
        centres = known[key]
        maps = to_input_grid(coarse[:, 0], centres, tuple(pixels.shape[-2:]))
    elif method == "saliency":
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        # NoiseTunnel's SmoothGrad, spelled out: it draws with torch.normal from the global
        # generator, which other threads reseed and draw from meanwhile. The same layout
        # (each image's copies side by side) and draws (standard normal × σ), so a generator
        # seeded as the global one was gives the same maps.
        copies = pixels.repeat_interleave(SMOOTHGRAD_SAMPLES, dim=0)
        noise = torch.randn(copies.shape, generator=generator) * SMOOTHGRAD_NOISE
        gradients = Saliency(wrapped).attribute(
            (copies + noise).detach().requires_grad_(True),
            target=targets.repeat_interleave(SMOOTHGRAD_SAMPLES),
            abs=True,
        )
        smoothed = gradients.view(len(pixels), SMOOTHGRAD_SAMPLES, *pixels.shape[1:])
        maps = (smoothed.sum(dim=1) / SMOOTHGRAD_SAMPLES).amax(dim=1)
    else:
        channels, height, width = pixels.shape[1:]
        window, stride = occlusion_window(min(height, width))
        scores = Occlusion(wrapped).attribute(
            inputs,
            target=targets,
            sliding_window_shapes=(channels, window, window),
            strides=(channels, stride, stride),
            baselines=0.0,
            perturbations_per_eval=64,
        )
        maps = F.relu(scores.sum(dim=1))  # where painting it over lowered the class score
    maps = maps.detach().clamp(min=0)
    peak = maps.flatten(1).amax(dim=1).clamp(min=1e-12)[:, None, None]
    return Explanation(maps / peak, predicted, confidence, targets, method, layer)


def centre_of_mass(maps: torch.Tensor) -> torch.Tensor:
    """(N, 2) row and column of each map's centre of mass (N, H, W), in pixels."""
    rows = torch.arange(maps.shape[1], dtype=maps.dtype)
    columns = torch.arange(maps.shape[2], dtype=maps.dtype)
    mass = maps.sum(dim=(1, 2)).clamp(min=1e-12)
    return torch.stack(
        [(maps.sum(dim=2) * rows).sum(dim=1) / mass, (maps.sum(dim=1) * columns).sum(dim=1) / mass],
        dim=1,
    )


def peaks(maps: torch.Tensor) -> torch.Tensor:
    """(N, 2) row and column of each map's largest value (N, H, W), in pixels."""
    flat = maps.flatten(1).argmax(dim=1)
    return torch.stack([flat // maps.shape[2], flat % maps.shape[2]], dim=1)
