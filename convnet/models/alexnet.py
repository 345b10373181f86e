"""AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep convolutional
neural networks", NeurIPS 2012 — five convolutions and three fully connected layers
(depth 8), built by torchvision (its single-tower variant of the paper's two-GPU network).
"""

from __future__ import annotations

import torch
from torch import nn

from convnet.models.compact import FastDropout, conv_relu, init_relu_network, register_compact
from convnet.models.imagenet import ChallengeEntry, ImageNetModel, register_torchvision
from convnet.models.registry import FeaturesThenHead

KRIZHEVSKY_2012 = (
    "Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural "
    "networks. NeurIPS 2012"
)


class AlexNet(ImageNetModel):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(features), 1))


register_torchvision(
    "alexnet",
    AlexNet,
    family="AlexNet",
    small_side=64,
    description="AlexNet: 5 convolutions (11×11 stride 4 first), 3 fully connected layers",
    # SuperVision's ILSVRC 2012 entry: 16.4% with 5 CNNs; 15.3% with 7 CNNs, two of them
    # pre-trained on the Fall 2011 ImageNet release (paper §6, Table 2).
    entry=ChallengeEntry(2012, 16.4, "SuperVision (5 CNNs)", KRIZHEVSKY_2012 + ", Table 2"),
    paper=KRIZHEVSKY_2012,
)


# --- the compact member, for 32×32 grey images (convnet/models/compact.py) ---


class AlexNetMini(FeaturesThenHead):
    """AlexNet's eight weight layers at 1/6 of its widths: five convolutions (the first
    with a large kernel), overlapping max pooling after the 1st, 2nd and 5th, and three
    fully connected layers with dropout 0.5 before the first two (paper §4.2)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5):
        super().__init__()
        # Overlapping pooling, §3.4: windows of 3 with stride 2 (32 → 15 → 7 → 3).
        self.features = nn.Sequential(
            *conv_relu(in_channels, 32, 5),
            nn.MaxPool2d(3, stride=2),
            *conv_relu(32, 64, 5),
            nn.MaxPool2d(3, stride=2),
            *conv_relu(64, 96, 3),
            *conv_relu(96, 96, 3),
            *conv_relu(96, 64, 3),
            nn.MaxPool2d(3, stride=2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            FastDropout(dropout),
            nn.Linear(64 * 3 * 3, 512),
            nn.ReLU(inplace=True),
            FastDropout(dropout),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, num_classes),
        )
        self.apply(init_relu_network)


@register_compact(
    "alexnet_mini",
    "AlexNet",
    "AlexNet in miniature: 5 conv + 3 FC, ReLU, dropout, overlapping 3×3/2 max pooling",
    KRIZHEVSKY_2012,
    2012,
)
def alexnet_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return AlexNetMini(num_classes, in_channels)
