"""Compact members of the ImageNet families for 32×32 grey images (Fashion-MNIST padded as
LeNet-5 pads MNIST), each keeping its family's defining idea, so that the growth in depth
from AlexNet to ResNet can be trained and compared on a CPU in minutes (issue 6).

- `alexnet_mini`: 5 convolution + 3 fully connected layers, ReLU, dropout, overlapping
  3×3 stride-2 max pooling (Krizhevsky et al. 2012, §3.1, §3.4, §4.2).
- `vgg_mini`: blocks of stacked 3×3 convolutions, each block closed by 2×2 max pooling,
  then three fully connected layers (Simonyan & Zisserman 2015, §2.1–2.3).
- `nin_mini`: "mlpconv" blocks, a spatial convolution followed by two 1×1 convolutions,
  and global average pooling of one map per class instead of fully connected layers
  (Lin, Chen & Yan 2014, §3.1–3.2).
- `googlenet_mini`: Inception modules with parallel 1×1, 3×3, 5×5 and pooling branches,
  1×1 reductions before the large kernels, nine modules in GoogLeNet's 2-5-2 arrangement
  (Szegedy et al. 2015, §4–5, Table 1), so its depth is GoogLeNet's 22.
- `resnet_mini`: ResNet-20 in the CIFAR layout of He et al. 2016, §4.2: a 3×3 convolution,
  three stages of three basic residual blocks (16, 32, 64 maps, 32×32, 16×16, 8×8), batch
  normalization, parameter-free identity shortcuts ("option A"), global average pooling.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from convnet.models.registry import FeaturesThenHead, register_model

# Fashion-MNIST pixel statistics on the 60,000 training images padded from 28×28 to 32×32
# with background 0 (as the engine feeds them): mean 0.2190, std 0.3318. (Unpadded 28×28:
# mean 0.2860, std 0.3530.)
FASHION_MNIST_PADDED_NORMALIZATION = (0.2190, 0.3318)
GREY_32 = (1, 32, 32)

KRIZHEVSKY_2012 = (
    "Krizhevsky, Sutskever, Hinton. ImageNet classification with deep convolutional neural "
    "networks. NeurIPS 2012"
)
SIMONYAN_2015 = (
    "Simonyan, Zisserman. Very deep convolutional networks for large-scale image "
    "recognition. ICLR 2015 (arXiv:1409.1556)"
)
LIN_2014 = "Lin, Chen, Yan. Network in network. ICLR 2014 (arXiv:1312.4400)"
SZEGEDY_2015 = "Szegedy et al. Going deeper with convolutions. CVPR 2015 (arXiv:1409.4842)"
HE_2016 = (
    "He, Zhang, Ren, Sun. Deep residual learning for image recognition. CVPR 2016 "
    "(arXiv:1512.03385), §4.2"
)


def _init_relu_network(module: nn.Module) -> None:
    """He et al. 2015 (Delving deep into rectifiers) initialisation, which keeps the signal's
    scale through a stack of ReLU layers. With AlexNet's N(0, 0.01) or torchvision's 0.01 for
    linear layers the signal shrinks ~100× through three narrow fully connected layers:
    measured, alexnet_mini stayed at chance after one epoch on 10,000 images."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None:
        nn.init.zeros_(module.bias)


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.ReLU(inplace=True),
    ]


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Convolution, batch normalization (Ioffe & Szegedy 2015), ReLU: torchvision's
    GoogLeNet and vgg*_bn. Without it our 16-layer vgg_mini and nin_mini, trained at the
    shared recipe's learning rate 0.05, collapsed to chance or half accuracy in one epoch
    (measured), where their 2014 originals trained for weeks with hand-staged settings."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


# --- layers that keep channels-last training fast on a CPU -------------------------------
# The engine trains convolutional networks channels-last (convnet/engine/device.py,
# layout_for). An operation whose gradient comes back channels-first makes every elementwise
# backward below it mix layouts, the slow path: ReLU's backward on 128×16×32×32 bf16 maps
# took 10 ms mixed, 0.5 ms with both channels-last (2-core Xeon). The three layers below
# compute exactly what the plain PyTorch ones do, with dense channels-last gradients in a
# channels-last network.


class GlobalAveragePool(nn.AdaptiveAvgPool2d):
    """The mean of each map. nn.AdaptiveAvgPool2d(1) lowers to mean(), whose gradient comes
    back channels-first; average pooling with the whole map as its window keeps the layout."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, x.shape[-2:])


class FastDropout(nn.Dropout):
    """nn.Dropout with its mask drawn by torch.rand_like: the same Bernoulli(1 − p) keep
    mask, drawn 3× faster on a CPU than bernoulli_ (3.6 vs 11 ms for nin_mini's
    128×24×15×15 maps, 2-core Xeon)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x, dtype=torch.float32) >= self.p
        return x * keep / (1.0 - self.p)


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


@torch.fx.wrap  # one node in a traced graph (convnet.analysis.summary counts depth on it)
def concatenate_channels(*tensors: torch.Tensor) -> torch.Tensor:
    """torch.cat along channels; the dense-gradient Function only where a gradient is taken
    (an exporter or a tracer without gradients records the plain torch.cat)."""
    if torch.is_grad_enabled() and any(tensor.requires_grad for tensor in tensors):
        return _ConcatenateChannels.apply(*tensors)
    return torch.cat(tensors, dim=1)


# --- AlexNet ---------------------------------------------------------------------------


class AlexNetMini(FeaturesThenHead):
    """AlexNet's eight weight layers at 1/6 of its widths: five convolutions (the first
    with a large kernel), overlapping max pooling after the 1st, 2nd and 5th, and three
    fully connected layers with dropout 0.5 before the first two (paper §4.2)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5):
        super().__init__()
        # Overlapping pooling, §3.4: windows of 3 with stride 2 (32 → 15 → 7 → 3).
        self.features = nn.Sequential(
            *_conv_relu(in_channels, 32, 5),
            nn.MaxPool2d(3, stride=2),
            *_conv_relu(32, 64, 5),
            nn.MaxPool2d(3, stride=2),
            *_conv_relu(64, 96, 3),
            *_conv_relu(96, 96, 3),
            *_conv_relu(96, 64, 3),
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
        self.apply(_init_relu_network)


# --- VGG -------------------------------------------------------------------------------

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
                layers.append(_conv_bn_relu(channels, width, 3))
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
        self.apply(_init_relu_network)


# --- Network in Network ----------------------------------------------------------------


def _mlpconv(
    in_channels: int, widths: tuple[int, int, int], kernel_size: int, scores: bool = False
) -> nn.Sequential:
    """One mlpconv layer: a k×k convolution, then two 1×1 convolutions, which act as a small
    multilayer perceptron applied at every position (paper §3.1). With `scores`, the last
    1×1 convolution gives the class maps, left linear: the paper's ReLU there only forces
    the scores to be non-negative, and a class whose map dies can never be predicted again."""
    first, second, third = widths
    last = nn.Conv2d(second, third, 1) if scores else _conv_bn_relu(second, third, 1)
    return nn.Sequential(
        _conv_bn_relu(in_channels, first, kernel_size), _conv_bn_relu(first, second, 1), last
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
        self.apply(_init_relu_network)


# --- GoogLeNet -------------------------------------------------------------------------


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
        conv = _conv_bn_relu
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
            conv1=_conv_bn_relu(in_channels, 16, 3),
            pool1=nn.MaxPool2d(3, stride=2, padding=1),  # 32 → 16
            conv2_reduce=_conv_bn_relu(16, 16, 1),
            conv2=_conv_bn_relu(16, 48, 3),
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


# --- ResNet ----------------------------------------------------------------------------


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


# --- registry --------------------------------------------------------------------------

# The shared recipe of `convnet experiment evolution`, also each model's `convnet train`
# default: SGD with Nesterov momentum, warm-up then cosine decay, the engine's batch
# augmentation (shift, rotation, scale). Eight epochs are as many as keep the slowest,
# resnet_mini, near ten minutes of training on a 2-core Xeon (about 800 images/s with two
# threads: 480,000 images in 603 s, measured). At lr 0.1 alexnet_mini diverged (NaN at
# step 24).
MINI_TRAIN_DEFAULTS = dict(epochs=8, batch_size=128, lr=0.05, weight_decay=5e-4, augment=True)


def _register(name: str, family: str, description: str, paper: str, year: int, **details):
    return register_model(
        name,
        family=family,
        description=description,
        input_size=GREY_32,
        normalization=FASHION_MNIST_PADDED_NORMALIZATION,
        train_defaults=MINI_TRAIN_DEFAULTS,
        paper=paper,
        year=year,
        **details,
    )


@_register(
    "alexnet_mini",
    "AlexNet",
    "AlexNet in miniature: 5 conv + 3 FC, ReLU, dropout, overlapping 3×3/2 max pooling",
    KRIZHEVSKY_2012,
    2012,
)
def alexnet_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return AlexNetMini(num_classes, in_channels)


@_register(
    "vgg_mini",
    "VGG",
    "VGG-16 in miniature: five blocks of 2-2-3-3-3 stacked 3×3 convolutions (with BN), 3 FC",
    SIMONYAN_2015,
    2014,
)
def vgg_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return VGGMini(num_classes, in_channels)


@_register(
    "nin_mini",
    "NiN",
    "Network in Network in miniature: three mlpconv blocks "
    "(k×k, 1×1, 1×1, with BN), global average pooling, no FC",
    LIN_2014,
    2013,
)
def nin_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return NiNMini(num_classes, in_channels)


@_register(
    "googlenet_mini",
    "GoogLeNet",
    "GoogLeNet in miniature: stem + nine Inception "
    "modules (1×1/3×3/5×5/pool branches), global average pooling",
    SZEGEDY_2015,
    2014,
)
def googlenet_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return GoogLeNetMini(num_classes, in_channels)


@_register(
    "resnet_mini",
    "ResNet",
    "ResNet-20 (CIFAR layout): 3 stages × 3 basic residual blocks, batch norm, identity shortcuts",
    HE_2016,
    2015,
    explain_layer="features.stage3_block3",
)
def resnet_mini(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return ResNetMini(num_classes, in_channels)
