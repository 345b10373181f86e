"""AlexNet: Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep convolutional
neural networks", NeurIPS 2012 — five convolutions and three fully connected layers
(depth 8), built by torchvision (its single-tower variant of the paper's two-GPU network).
"""

from __future__ import annotations

import torch
from torchvision import models as tv

from convnet.models.imagenet import ChallengeEntry, ImageNetModel, register_torchvision

KRIZHEVSKY_2012 = (
    "Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural "
    "networks. NeurIPS 2012"
)


class AlexNet(tv.AlexNet, ImageNetModel):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(features), 1))


register_torchvision(
    "alexnet",
    tv.alexnet,
    AlexNet,
    family="AlexNet",
    small_side=64,
    description="AlexNet: 5 convolutions (11×11 stride 4 first), 3 fully connected layers",
    # SuperVision's ILSVRC 2012 entry: 16.4% with 5 CNNs; 15.3% with 7 CNNs, two of them
    # pre-trained on the Fall 2011 ImageNet release (paper §6, Table 2).
    entry=ChallengeEntry(2012, 16.4, "SuperVision (5 CNNs)", KRIZHEVSKY_2012 + ", Table 2"),
    paper=KRIZHEVSKY_2012,
)
