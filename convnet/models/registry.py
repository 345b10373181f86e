"""Model registry: one entry per architecture, so the CLI and the tests share one list."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from convnet.errors import UserError


@dataclass(frozen=True)
class ModelSpec:
    """What convnet knows about a registered architecture besides its code."""

    name: str
    builder: Callable[..., nn.Module]
    family: str
    description: str
    input_size: tuple[int, int, int]  # channels, height, width of the default input
    # Per-channel (mean, std) applied to pixels in [0, 1] before the model sees them.
    normalization: tuple[float, float] = (0.0, 1.0)
    # Training hyperparameters that reach the published error with `convnet train`.
    train_defaults: dict = field(default_factory=dict)
    paper: str = ""
    year: int | None = None
    # The smallest convenient input the architecture accepts: quick checks and tests run
    # ImageNet-size families at 32×32 instead of 224×224. None means `input_size`.
    small_input_size: tuple[int, int, int] | None = None
    # The module whose feature maps Grad-CAM weighs (`convnet explain`, the web page), by
    # its name in named_modules(). None: the last convolution whose maps are at least 2×2.
    explain_layer: str | None = None

    @property
    def quick_input_size(self) -> tuple[int, int, int]:
        return self.small_input_size or self.input_size


MODELS: dict[str, ModelSpec] = {}


class FeaturesThenHead(nn.Module):
    """Our own models: a `features` module, then a `head` module. The split is the uniform
    interface (as in timm) that feature maps, summaries and experiments use without hooks."""

    features: nn.Module
    head: nn.Module

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def register_model(
    name: str, *, family: str, description: str, input_size: tuple[int, int, int], **details
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator adding a builder `fn(num_classes=…, in_channels=…, **config)` to the registry."""

    def decorate(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS:
            raise ValueError(f"model '{name}' is registered twice")
        MODELS[name] = ModelSpec(name, builder, family, description, input_size, **details)
        return builder

    return decorate


def list_models() -> list[str]:
    return sorted(MODELS)


def get_model_spec(name: str) -> ModelSpec:
    if name not in MODELS:
        raise UserError(f"Unknown model '{name}'. Known models: {', '.join(list_models())}.")
    return MODELS[name]


def get_model(
    name: str, num_classes: int = 10, in_channels: int | None = None, **config
) -> nn.Module:
    """Build a registered model with fresh weights."""
    spec = get_model_spec(name)
    channels = spec.input_size[0] if in_channels is None else in_channels
    return spec.builder(num_classes=num_classes, in_channels=channels, **config)


# From this input width on, a registered network is ImageNet-size (AlexNet's 61 M parameters
# to VGG-19's 144 M): `shapes_model` builds it on the meta device, which allocates nothing.
# The others build on the CPU in milliseconds; on the meta device their initialisation would
# go through torch._refs, whose first use imports torch._dynamo (seconds of a command's start).
META_INPUT_WIDTH = 224


def shapes_model(
    name: str, num_classes: int = 10, in_channels: int | None = None, **config
) -> nn.Module:
    """`get_model` for reading parameter names and shapes, or layer sizes, not for computing:
    an ImageNet-size network on the meta device (on the CPU where its initialisation cannot
    run there), any other on the CPU."""
    if get_model_spec(name).input_size[2] >= META_INPUT_WIDTH:
        try:
            with torch.device("meta"):
                return get_model(name, num_classes, in_channels, **config)
        except (RuntimeError, NotImplementedError):  # e.g. data-dependent initialization
            pass
    return get_model(name, num_classes, in_channels, **config)
