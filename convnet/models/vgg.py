"""VGG: Simonyan and Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015 — stacks of 3×3 convolutions, configurations A, B, D, E (11, 13,
16, 19 weight layers), built by torchvision; the `_bn` variants add batch normalization
(Ioffe & Szegedy 2015), which was not part of the challenge entry.
"""

from __future__ import annotations

import torch
from torchvision import models as tv

from convnet.models.imagenet import ChallengeEntry, ImageNetModel, register_torchvision

SIMONYAN_2015 = (
    "Simonyan, Zisserman. Very deep convolutional networks for large-scale image recognition. "
    "ICLR 2015 (arXiv:1409.1556)"
)
# The VGG team's ILSVRC 2014 classification submission (2nd place): an ensemble of 7 nets,
# 7.3% top-5 test error (paper Table 7; 6.8% with 2 nets after the challenge).
VGG_ENTRY = ChallengeEntry(2014, 7.3, "VGG (ensemble of 7 nets)", SIMONYAN_2015 + ", Table 7")


class VGG(tv.VGG, ImageNetModel):
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
            getattr(tv, _name),
            VGG,
            family="VGG",
            entry=VGG_ENTRY,
            paper=SIMONYAN_2015,
            description=f"VGG-{_depth} (configuration {_letter}): 3×3 convolutions{_note}, "
            "3 fully connected layers",
        )
