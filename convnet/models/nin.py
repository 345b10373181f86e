"""Network in Network: Lin, Chen, Yan, "Network in network", ICLR 2014 — "mlpconv" layers
(a convolution followed by 1×1 convolutions, a small multilayer perceptron at every
position) and global average pooling of one map per class instead of fully connected
layers. Only its compact member is registered: the paper's networks are for CIFAR-10 and
small images (convnet/models/compact.py).
"""

from __future__ import annotations

from torch import nn

from convnet.models.compact import (
    FastDropout,
    GlobalAveragePool,
    conv_bn_relu,
    init_relu_network,
    register_compact,
)
from convnet.models.registry import FeaturesThenHead

LIN_2014 = "Lin, Chen, Yan. Network in network. ICLR 2014 (arXiv:1312.4400)"


def _mlpconv(
    in_channels: int, widths: tuple[int, int, int], kernel_size: int, scores: bool = False
) -> nn.Sequential:
    """One mlpconv layer: a k×k convolution, then two 1×1 convolutions, which act as a small
    multilayer perceptron applied at every position (paper §3.1). With `scores`, the last
    1×1 convolution gives the class maps, left linear: the paper's ReLU there only forces
    the scores to be non-negative, and a class whose map dies can never be predicted again."""
    first, second, third = widths
    last = nn.Conv2d(second, third, 1) if scores else conv_bn_relu(second, third, 1)
    return nn.Sequential(
        conv_bn_relu(in_channels, first, kernel_size), conv_bn_relu(first, second, 1), last
    )


class NiNMini(FeaturesThenHead):
    """The paper's CIFAR-10 network (three mlpconv layers 192-160-96, 192-192-192,
    192-192-10) at 1/4 of its widths, with batch normalization; the last 1×1 convolution
    outputs one map per class, and global average pooling turns each map into its class
    score (§3.2)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5):
        super().__init__()
        self.features = nn.Sequential(
            _mlpconv(in_channels, (48, 40, 24), 5),
            nn.MaxPool2d(3, stride=2),
            FastDropout(dropout),
            _mlpconv(24, (48, 48, 48), 5),
            nn.MaxPool2d(3, stride=2),
            FastDropout(dropout),
            _mlpconv(48, (48, 48, num_classes), 3, scores=True),
        )
        self.head = nn.Sequential(GlobalAveragePool(), nn.Flatten())
        self.apply(init_relu_network)


@register_compact(
    "nin_mini",
    "NiN",
    "Network in Network in miniature: three mlpconv blocks "
    "(k×k, 1×1, 1×1, with BN), global average pooling, no FC",
    LIN_2014,
    2013,
)
def nin_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return NiNMini(num_classes, in_channels)
