"""What the compact members of the ImageNet families share: 32×32 grey inputs (Fashion-MNIST
padded as LeNet-5 pads MNIST), their building blocks, their recipe and their registration.
Each family's file defines its compact member, keeping the family's defining idea, so that
the growth in depth from AlexNet to ResNet can be trained and compared on a CPU in minutes
(issue 6):

- `alexnet_mini` (alexnet.py): 5 convolution + 3 fully connected layers, ReLU, dropout,
  overlapping 3×3 stride-2 max pooling (Krizhevsky et al. 2012, §3.1, §3.4, §4.2).
- `vgg_mini` (vgg.py): blocks of stacked 3×3 convolutions, each block closed by 2×2 max
  pooling, then three fully connected layers (Simonyan & Zisserman 2015, §2.1–2.3).
- `nin_mini` (nin.py): "mlpconv" blocks, a spatial convolution followed by two 1×1
  convolutions, and global average pooling of one map per class instead of fully connected
  layers (Lin, Chen & Yan 2014, §3.1–3.2).
- `googlenet_mini` (googlenet.py): Inception modules with parallel 1×1, 3×3, 5×5 and pooling
  branches, 1×1 reductions before the large kernels, nine modules in GoogLeNet's 2-5-2
  arrangement (Szegedy et al. 2015, §4–5, Table 1), so its depth is GoogLeNet's 22.
- `resnet_mini` (resnet.py): ResNet-20 in the CIFAR layout of He et al. 2016, §4.2: a 3×3
  convolution, three stages of three basic residual blocks (16, 32, 64 maps, 32×32, 16×16,
  8×8), batch normalization, parameter-free identity shortcuts ("option A"), global average
  pooling.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from convnet.models.registry import register_model

# Fashion-MNIST pixel statistics on the 60,000 training images padded from 28×28 to 32×32
# with background 0 (as the engine feeds them): mean 0.2190, std 0.3318. (Unpadded 28×28:
# mean 0.2860, std 0.3530.)
FASHION_MNIST_PADDED_NORMALIZATION = (0.2190, 0.3318)
GREY_32 = (1, 32, 32)


def init_relu_network(module: nn.Module) -> None:
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


def conv_relu(in_channels: int, out_channels: int, kernel_size: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
        nn.ReLU(inplace=True),
    ]


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
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
# took 10 ms mixed, 0.5 ms with both channels-last (2-core Xeon). The two layers below (and
# googlenet.py's concatenate_channels) compute exactly what the plain PyTorch ones do, with
# dense channels-last gradients in a channels-last network.


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


# The shared recipe of `convnet experiment evolution`, also each model's `convnet train`
# default: SGD with Nesterov momentum, warm-up then cosine decay, the engine's batch
# augmentation (shift, rotation, scale). Eight epochs are as many as keep the slowest,
# resnet_mini, near ten minutes of training on a 2-core Xeon (about 800 images/s with two
# threads: 480,000 images in 603 s, measured). At lr 0.1 alexnet_mini diverged (NaN at
# step 24).
MINI_TRAIN_DEFAULTS = dict(epochs=8, batch_size=128, lr=0.05, weight_decay=5e-4, augment=True)


def register_compact(name: str, family: str, description: str, paper: str, year: int, **details):
    """register_model for a compact member: 32×32 grey inputs, Fashion-MNIST's padded
    statistics and the shared recipe."""
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
