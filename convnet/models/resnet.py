"""ResNet: He, Zhang, Ren, Sun, "Deep residual learning for image recognition", CVPR 2016 —
identity shortcuts around blocks of 2 (basic) or 3 (bottleneck) convolutions, 18 to 152
weight layers, built by torchvision.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from convnet.models.compact import GlobalAveragePool, register_compact
from convnet.models.imagenet import ChallengeEntry, ImageNetModel, register_torchvision
from convnet.models.registry import FeaturesThenHead

HE_2016 = (
    "He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016 "
    "(arXiv:1512.03385)"
)
# MSRA's ILSVRC 2015 winning entry: an ensemble of six models of different depth, 3.57%
# top-5 on the test set (paper Table 5).
RESNET_ENTRY = ChallengeEntry(2015, 3.57, "MSRA (ensemble of 6 ResNets)", HE_2016 + ", Table 5")


class ResNet(ImageNetModel):
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
        ResNet,
        family="ResNet",
        description=f"ResNet-{_depth}: {_block} residual blocks, global average pooling",
        entry=RESNET_ENTRY,
        paper=HE_2016,
    )


# --- the compact member, for 32×32 grey images (convnet/models/compact.py) ---


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch normalization; the input is added back before the
    last ReLU. Where the block halves the resolution and doubles the maps, the shortcut
    subsamples by 2 and pads the new maps with zeros: option A, no parameters (§3.3, §4.2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.stride, self.extra_channels = stride, out_channels - in_channels

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:  # x[:, :, ::s, ::s], as a pooling whose gradient stays channels-last
            x = F.avg_pool2d(x, 1, self.stride)
        if self.extra_channels:
            half = self.extra_channels // 2
            x = F.pad(x, (0, 0, 0, 0, half, self.extra_channels - half))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x), inplace=True)


class ResNetMini(FeaturesThenHead):
    """ResNet-6n+2 for 32×32 inputs (§4.2): n = 3 gives ResNet-20, 0.27 M parameters."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, blocks_per_stage: int = 3):
        super().__init__()
        layers = OrderedDict(
            conv1=nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(16),
            relu1=nn.ReLU(inplace=True),
        )
        channels = 16
        for stage, width in enumerate((16, 32, 64), start=1):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 1 and index == 0 else 1
                layers[f"stage{stage}_block{index + 1}"] = BasicBlock(channels, width, stride)
                channels = width
        self.features = nn.Sequential(layers)
        self.head = nn.Sequential(
            GlobalAveragePool(), nn.Flatten(), nn.Linear(channels, num_classes)
        )
        for module in self.modules():  # He et al. 2015 initialisation, as in §4.2
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


@register_compact(
    "resnet_mini",
    "ResNet",
    "ResNet-20 (CIFAR layout): 3 stages × 3 basic residual blocks, batch norm, identity shortcuts",
    HE_2016 + ", §4.2",
    2015,
    explain_layer="features.stage3_block3",
)
def resnet_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return ResNetMini(num_classes, in_channels)
