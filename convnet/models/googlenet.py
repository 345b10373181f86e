"""GoogLeNet: Szegedy et al., "Going deeper with convolutions", CVPR 2015 — nine Inception
modules, 22 weight layers on the longest path, built by torchvision.

Built without the two auxiliary classifiers (torchvision drops them after loading its
weights too), so the parameter count is torchvision's published 6,624,904.
"""

from __future__ import annotations

import torch
from torchvision import models as tv

from convnet.models.imagenet import ChallengeEntry, ImageNetModel, register_torchvision

SZEGEDY_2015 = "Szegedy et al. Going deeper with convolutions. CVPR 2015 (arXiv:1409.4842)"


class GoogLeNet(tv.GoogLeNet, ImageNetModel):
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
    tv.googlenet,
    GoogLeNet,
    family="GoogLeNet",
    description="GoogLeNet (Inception v1): 9 Inception modules, global average pooling",
    # GoogLeNet's ILSVRC 2014 winning entry: 7 models × 144 crops, 6.67% (paper Table 2).
    entry=ChallengeEntry(2014, 6.67, "GoogLeNet (7 models, 144 crops)", SZEGEDY_2015 + ", Table 2"),
    paper=SZEGEDY_2015,
    aux_logits=False,
    init_weights=True,
)
