"""What the page shows for one digit: the view after shift/rotate/scale/noise, both networks'
probabilities, every feature map of the CNN, its F6 cells and output scores, its C1 filters,
its anatomy (convnet.serve.anatomy), and where each network looked.

Everything is computed on the server from the same 28×28 uint8 digit, so the page shows
exactly the pixels both networks saw. With `serve --precision int8` the answers come from
each network's int8 form (convnet.serve.quantized), with the fp32 answer beside them; the
inside views always come from the fp32 model ("anatomy_precision").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from convnet.analysis.explain import centre_of_mass, explain
from convnet.data.transforms import affine, normalize, to_model_input
from convnet.serve.anatomy import CNN_LAYERS, HEAD_LAYERS, activation_after, anatomy
from convnet.serve.models import ServedModel, ServedModels

# Where each network looked (convnet.analysis.explain, Captum): Grad-CAM on the CNN's C3
# (the registry's explain_layer), input saliency for the ordinary network, which has no maps.
EXPLANATION_METHODS = {"cnn": "gradcam", "ordinary": "saliency"}
DECIMALS = 4  # enough for a picture and a dot product shown to four places; keeps JSON small
TOP_K = 3


@dataclass(frozen=True)
class View:
    """How the page moves the digit: pixels, degrees (counter-clockwise), a factor, a σ."""

    shift_x: float = 0.0
    shift_y: float = 0.0
    rotate: float = 0.0
    scale: float = 1.0
    noise: float = 0.0
    seed: int = 0

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def apply_view(digit: torch.Tensor, view: View) -> torch.Tensor:
    """uint8 (28, 28) → uint8 (28, 28): rotate and scale about the centre, shift, add noise.

    Gaussian noise comes from a generator seeded with `view.seed`, so the same request
    always yields the same picture (the page can redraw without the noise flickering).
    """
    image = digit.float().div(255.0)[None, None]
    if view.rotate or view.scale != 1.0 or view.shift_x or view.shift_y:
        size = image.shape[-1]
        image = affine(
            image,
            torch.tensor([math.radians(-view.rotate)]),  # screen y points down: negate for CCW
            torch.tensor([view.scale]),
            torch.tensor([view.shift_x * 2 / size]),  # affine_grid's [-1, 1] units
            torch.tensor([view.shift_y * 2 / size]),
        )
    if view.noise > 0:
        generator = torch.Generator().manual_seed(view.seed)
        image = image + view.noise * torch.randn(image.shape, generator=generator)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)[0, 0]


def _rounded(tensor: torch.Tensor) -> list:
    return np.round(tensor.detach().float().cpu().numpy().astype(np.float64), DECIMALS).tolist()


def _prepare(served: ServedModel, digit: torch.Tensor) -> torch.Tensor:
    spec = served.loaded.spec
    return normalize(to_model_input(digit[None], spec.input_size), *spec.normalization)


def _answer(served: ServedModel, logits: torch.Tensor) -> dict:
    """Probabilities (softmax of one image's logits) and the TOP_K classes."""
    probabilities = logits.float().softmax(dim=1)[0]
    top = probabilities.topk(min(TOP_K, len(probabilities)))
    names = served.loaded.class_names
    return {
        "probabilities": _rounded(probabilities),
        "top": [
            {"index": int(i), "name": names[int(i)], "probability": round(float(p), 6)}
            for p, i in zip(top.values, top.indices, strict=True)
        ],
    }


def _prediction(served: ServedModel, inputs: torch.Tensor, logits: torch.Tensor) -> dict:
    """A network's answer to `inputs` (1, C, H, W), whose fp32 logits are `logits`: from its
    int8 form where it has one, then with the fp32 answer beside it and whether their top-1
    classes agree."""
    found = {
        "role": served.role,
        "name": served.loaded.name,
        "run": served.origin.run,
        "augment": served.augment,
        "precision": served.precision,
    }
    fp32 = _answer(served, logits)
    if served.int8 is None:
        return {**found, **fp32}
    int8 = _answer(served, served.int8(inputs))
    agree = int8["top"][0]["index"] == fp32["top"][0]["index"]
    return {**found, **int8, "fp32": fp32, "agrees_with_fp32": agree}


def _outputs(
    layers: torch.nn.Sequential, names: tuple, x: torch.Tensor
) -> tuple[dict, torch.Tensor]:
    """Each of `names`' output after the squashing that follows it, and the last output."""
    found: dict[str, torch.Tensor] = {}
    layer = None
    for name, module in layers.named_children():
        if name in names:
            layer = name
        x = module(x)
        if layer is not None:
            found[layer] = x.clone()  # clone: the ReLU that follows works in place
    return found, x


def feature_maps(served: ServedModel, inputs: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """Each feature layer's output after the squashing that follows it, and the features."""
    return _outputs(served.loaded.model.features, CNN_LAYERS, inputs)


def head_values(served: ServedModel, features: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """F6's cells after their squashing and the output scores (where the head names them),
    and the logits."""
    return _outputs(served.loaded.model.head, HEAD_LAYERS, features)


def explanations(models: ServedModels, seen: torch.Tensor, seed: int = 0) -> dict:
    """Per role, where the network looked at `seen` (uint8 28×28) on the same 28×28 grid:
    the map (values in [0, 1], 1 at the peak of the model's whole input), its centre of mass
    (row, column in pixels), the method, Grad-CAM's layer and the class explained.

    Saliency's noise comes from a generator of this request's own, seeded with `seed` (the
    view's): requests explained in several threads at once get the answers each would get
    alone, and the same request always gets the same maps."""
    found = {}
    for served in models.all():
        spec, method = served.loaded.spec, EXPLANATION_METHODS[served.role]
        pixels = to_model_input(seen[None], spec.input_size)
        explanation = explain(
            served.loaded.model,
            pixels,
            spec.normalization,
            method,
            spec=spec,
            generator=torch.Generator().manual_seed(seed),
        )
        top = (pixels.shape[-2] - seen.shape[0]) // 2  # the padding around MNIST's 28×28
        left = (pixels.shape[-1] - seen.shape[1]) // 2
        heat = explanation.maps[:, top : top + seen.shape[0], left : left + seen.shape[1]]
        found[served.role] = {
            "method": method,
            "layer": explanation.layer,
            "shape": list(heat.shape[1:]),
            "data": _rounded(heat[0]),
            "centre": _rounded(centre_of_mass(heat)[0]),
            "target": int(explanation.targets[0]),
        }
    return found


def look(models: ServedModels, digit: torch.Tensor, view: View) -> dict:
    """The whole answer of /api/predict for one 28×28 uint8 digit."""
    seen = apply_view(digit, view)
    cnn, ordinary = models.cnn, models.ordinary
    with torch.inference_mode():
        cnn_input, ordinary_input = _prepare(cnn, seen), _prepare(ordinary, seen)
        maps, features = feature_maps(cnn, cnn_input)
        head, cnn_logits = head_values(cnn, features)
        ordinary_logits = ordinary.loaded.model(ordinary_input)
        c1 = cnn.loaded.model.features.c1
        filters = {
            "weights": _rounded(c1.weight[:, 0]),
            "bias": _rounded(c1.bias),
            "activation": activation_after(cnn.loaded.model.features, "c1"),
        }
        described = anatomy(cnn.loaded.model, _rounded)
    return {
        "view": view.as_dict(),
        "pixels": seen.tolist(),
        "model_input": _rounded(cnn_input[0, 0]),
        "precision": cnn.precision,  # of the answers ("predictions")
        "anatomy_precision": "fp32",  # of everything else: maps, head, explanations
        "predictions": [
            _prediction(cnn, cnn_input, cnn_logits),
            _prediction(ordinary, ordinary_input, ordinary_logits),
        ],
        "feature_maps": {
            name: {"shape": list(tensor.shape[1:]), "data": _rounded(tensor[0])}
            for name, tensor in maps.items()
        },
        "c1_filters": filters,
        "head": {name: _rounded(value[0].flatten()) for name, value in head.items()},
        "anatomy": described,
        "explanations": explanations(models, seen, view.seed),
    }
