"""ResNet: He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016 —
identity shortcuts around blocks of 2 (basic) or 3 (bottleneck) convolutions, 18 to 152
weight layers, built by torchvision.
"""

from __future__ import annotations

import torch
from torchvision import models as tv

from convnet.models.imagenet import ChallengeEntry, ImageNetModel, register_torchvision

HE_2016 = (
    "He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016 "
    "(arXiv:1512.03385)"
)
# MSRA's ILSVRC 2015 winning entry: an ensemble of six models of different depth, 3.57%
# top-5 on the test set (paper Table 5).
RESNET_ENTRY = ChallengeEntry(2015, 3.57, "MSRA (ensemble of 6 ResNets)", HE_2016 + ", Table 5")


class ResNet(tv.ResNet, ImageNetModel):
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(features), 1))


# Paper Table 1: basic blocks for 18/34 layers, bottleneck blocks for 50/101/152.
BLOCKS = {18: "basic", 34: "basic", 50: "bottleneck", 101: "bottleneck", 152: "bottleneck"}

for _depth, _block in BLOCKS.items():
    register_torchvision(
        f"resnet{_depth}",
        getattr(tv, f"resnet{_depth}"),
        ResNet,
        family="ResNet",
        description=f"ResNet-{_depth}: {_block} residual blocks, global average pooling",
        entry=RESNET_ENTRY,
        paper=HE_2016,
    )
