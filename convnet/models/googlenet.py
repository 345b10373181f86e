"""GoogLeNet: Szegedy et al., "Going deeper with convolutions", CVPR 2015 — nine Inception
modules, 22 weight layers on the longest path, built by torchvision.

Built without the two auxiliary classifiers (torchvision drops them after loading its
weights too), so the parameter count is torchvision's published 6,624,904.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from convnet.models.compact import FastDropout, GlobalAveragePool, conv_bn_relu, register_compact
from convnet.models.imagenet import ChallengeEntry, ImageNetModel, register_torchvision
from convnet.models.registry import FeaturesThenHead

SZEGEDY_2015 = "Szegedy et al. Going deeper with convolutions. CVPR 2015 (arXiv:1409.4842)"


class GoogLeNet(ImageNetModel):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self._transform_input(x)
        for name in (
            "conv1",
            "maxpool1",
            "conv2",
            "conv3",
            "maxpool2",
            "inception3a",
            "inception3b",
            "maxpool3",
            "inception4a",
            "inception4b",
            "inception4c",
            "inception4d",
            "inception4e",
            "maxpool4",
            "inception5a",
            "inception5b",
        ):
            x = getattr(self, name)(x)
        return x

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.avgpool(features), 1)))

    def prepare_state_dict(self, tensors: dict) -> dict:
        """torchvision's googlenet file also holds the auxiliary classifiers (aux1, aux2),
        which its builder discards after loading; that file was ported from TensorFlow and
        expects `transform_input` (re-normalizing ImageNet-normalized input to [-1, 1])."""
        auxiliary = [key for key in tensors if key.startswith(("aux1.", "aux2."))]
        if auxiliary and self.aux1 is None:
            self.transform_input = True
            tensors = {k: v for k, v in tensors.items() if k not in auxiliary}
        return tensors


register_torchvision(
    "googlenet",
    GoogLeNet,
    family="GoogLeNet",
    description="GoogLeNet (Inception v1): 9 Inception modules, global average pooling",
    # GoogLeNet's ILSVRC 2014 winning entry: 7 models × 144 crops, 6.67% (paper Table 2).
    entry=ChallengeEntry(2014, 6.67, "GoogLeNet (7 models, 144 crops)", SZEGEDY_2015 + ", Table 2"),
    paper=SZEGEDY_2015,
    aux_logits=False,
    init_weights=True,
)


# --- the compact member, for 32×32 grey images (convnet/models/compact.py) ---


class _ConcatenateChannels(torch.autograd.Function):
    """torch.cat along channels whose gradient hands each input a dense copy in the
    gradient's layout rather than a strided slice (ReLU's backward on a slice: 0.59 vs
    0.08 ms)."""

    @staticmethod
    def forward(ctx, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.widths = [tensor.shape[1] for tensor in tensors]
        return torch.cat(tensors, dim=1)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, ...]:
        parts = gradient.split(ctx.widths, dim=1)
        return tuple(part.clone(memory_format=torch.preserve_format) for part in parts)


# Wrapped here, in the module whose code calls it: torch.fx.wrap patches the globals of the
# module it is called in. One node in a traced graph (convnet.analysis.summary counts depth
# on it).
@torch.fx.wrap
def concatenate_channels(*tensors: torch.Tensor) -> torch.Tensor:
    """torch.cat along channels; the dense-gradient Function only where a gradient is taken
    (an exporter or a tracer without gradients records the plain torch.cat)."""
    if torch.is_grad_enabled() and any(tensor.requires_grad for tensor in tensors):
        return _ConcatenateChannels.apply(*tensors)
    return torch.cat(tensors, dim=1)


class Inception(nn.Module):
    """Four parallel branches concatenated along channels: 1×1; 1×1 reduction → 3×3;
    1×1 reduction → 5×5; 3×3 max pooling → 1×1 projection (paper Fig. 2b)."""

    def __init__(
        self,
        in_channels: int,
        ones: int,
        threes_reduce: int,
        threes: int,
        fives_reduce: int,
        fives: int,
        pool_projection: int,
    ):
        super().__init__()
        conv = conv_bn_relu
        self.branch1 = conv(in_channels, ones, 1)
        self.branch3 = nn.Sequential(
            conv(in_channels, threes_reduce, 1), conv(threes_reduce, threes, 3)
        )
        self.branch5 = nn.Sequential(
            conv(in_channels, fives_reduce, 1), conv(fives_reduce, fives, 5)
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), conv(in_channels, pool_projection, 1)
        )
        self.out_channels = ones + threes + fives + pool_projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x))
        return concatenate_channels(*branches)


# GoogLeNet's Table 1 widths (#1×1, #3×3 reduce, #3×3, #5×5 reduce, #5×5, pool proj) at
# 1/4, for modules 3a–3b (8×8 here), 4a–4e (4×4) and 5a–5b (2×2).
GOOGLENET_MINI_MODULES = {
    "3": ((16, 24, 32, 4, 8, 8), (32, 32, 48, 8, 24, 16)),
    "4": (
        (48, 24, 52, 4, 12, 16),
        (40, 28, 56, 6, 16, 16),
        (32, 32, 64, 6, 16, 16),
        (28, 36, 72, 8, 16, 16),
        (64, 40, 80, 8, 32, 32),
    ),
    "5": ((64, 40, 80, 8, 32, 32), (96, 48, 96, 12, 32, 32)),
}


class GoogLeNetMini(FeaturesThenHead):
    """GoogLeNet's stem (convolution, pooling, 1×1 then 3×3 convolution, pooling), nine
    Inception modules with max pooling after 3b and 4e, global average pooling, dropout
    0.4 and one fully connected layer (paper Table 1). Auxiliary classifiers left out: the
    paper found their effect small (§5: about 0.5%)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.4):
        super().__init__()
        # The 7×7 stride-2 first convolution becomes 3×3 stride 1 for 32-pixel inputs.
        stem = OrderedDict(
            conv1=conv_bn_relu(in_channels, 16, 3),
            pool1=nn.MaxPool2d(3, stride=2, padding=1),  # 32 → 16
            conv2_reduce=conv_bn_relu(16, 16, 1),
            conv2=conv_bn_relu(16, 48, 3),
            pool2=nn.MaxPool2d(3, stride=2, padding=1),  # 16 → 8
        )
        layers, channels = stem, 48
        for stage, modules in GOOGLENET_MINI_MODULES.items():
            for letter, widths in zip("abcde", modules, strict=False):
                module = Inception(channels, *widths)
                layers[f"inception{stage}{letter}"] = module
                channels = module.out_channels
            if stage != "5":
                layers[f"pool{stage}"] = nn.MaxPool2d(3, stride=2, padding=1)  # 8 → 4 → 2
        self.features = nn.Sequential(layers)
        self.head = nn.Sequential(
            GlobalAveragePool(),
            nn.Flatten(),
            FastDropout(dropout),
            nn.Linear(channels, num_classes),
        )


@register_compact(
    "googlenet_mini",
    "GoogLeNet",
    "GoogLeNet in miniature: stem + nine Inception "
    "modules (1×1/3×3/5×5/pool branches), global average pooling",
    SZEGEDY_2015,
    2014,
)
def googlenet_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return GoogLeNetMini(num_classes, in_channels)
