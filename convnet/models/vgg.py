"""VGG: Simonyan and Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015 — stacks of 3×3 convolutions, configurations A, B, D, E (11, 13,
16, 19 weight layers), built by torchvision; the `_bn` variants add batch normalization
(Ioffe & Szegedy 2015), which was not part of the challenge entry.
"""

from __future__ import annotations

import torch
from torch import nn

from convnet.models.compact import (
    GREY_32,
    FastDropout,
    conv_bn_relu,
    init_relu_network,
    register_compact,
)
from convnet.models.imagenet import ChallengeEntry, ImageNetModel, register_torchvision
from convnet.models.registry import FeaturesThenHead

SIMONYAN_2015 = (
    "Simonyan, Zisserman. Very deep convolutional networks for large-scale image recognition. "
    "ICLR 2015 (arXiv:1409.1556)"
)
# The VGG team's ILSVRC 2014 classification submission (2nd place): an ensemble of 7 nets,
# 7.3% top-5 test error (paper Table 7; 6.8% with 2 nets after the challenge).
VGG_ENTRY = ChallengeEntry(2014, 7.3, "VGG (ensemble of 7 nets)", SIMONYAN_2015 + ", Table 7")


class VGG(ImageNetModel):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(features), 1))


# Paper Table 1: configuration letter of each depth.
CONFIGURATIONS = {11: "A", 13: "B", 16: "D", 19: "E"}

for _depth, _letter in CONFIGURATIONS.items():
    for _suffix, _note in (("", ""), ("_bn", " with batch normalization")):
        _name = f"vgg{_depth}{_suffix}"
        register_torchvision(
            _name,
            VGG,
            family="VGG",
            entry=VGG_ENTRY,
            paper=SIMONYAN_2015,
            description=f"VGG-{_depth} (configuration {_letter}): 3×3 convolutions{_note}, "
            "3 fully connected layers",
        )


# --- the compact member, for 32×32 grey images (convnet/models/compact.py) ---


# Convolutions per block and their width: VGG-16's five blocks (configuration D,
# 2-2-3-3-3 convolutions of 64-128-256-512-512 maps) at 1/4 of its widths; five 2×2
# poolings take 32 px to 1.
VGG_MINI_BLOCKS = ((2, 16), (2, 32), (3, 64), (3, 128), (3, 128))


class VGGMini(FeaturesThenHead):
    """Blocks of stacked 3×3 convolutions (two 3×3 see what one 5×5 sees, with fewer
    weights and one more ReLU: paper §2.3), 2×2 max pooling between blocks, then three
    fully connected layers with dropout; batch normalization as in torchvision's vgg16_bn."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        blocks: tuple[tuple[int, int], ...] = VGG_MINI_BLOCKS,
        dropout: float = 0.5,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for convolutions, width in blocks:
            for _ in range(convolutions):
                layers.append(conv_bn_relu(channels, width, 3))
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        side = GREY_32[1] // 2 ** len(blocks)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels * side * side, 256),
            nn.ReLU(inplace=True),
            FastDropout(dropout),
            nn.Linear(256, 256),
            nn.ReLU(inplace=True),
            FastDropout(dropout),
            nn.Linear(256, num_classes),
        )
        self.apply(init_relu_network)


@register_compact(
    "vgg_mini",
    "VGG",
    "VGG-16 in miniature: five blocks of 2-2-3-3-3 stacked 3×3 convolutions (with BN), 3 FC",
    SIMONYAN_2015,
    2014,
)
def vgg_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return VGGMini(num_classes, in_channels)
