"""LeNet-5: LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998 — in today's form (`lenet5`) and as published
(`lenet5_1998`).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from convnet.models.pooling import MaxPool2x2
from convnet.models.registry import FeaturesThenHead, register_model

# MNIST pixel statistics after padding 28×28 to 32×32 with background (computed on the
# training set: mean 0.1307·784/1024, std re-measured on the padded images).
MNIST_PADDED_NORMALIZATION = (0.1000, 0.2752)

# Table I of the paper: which S2 maps (rows) each of the 16 C3 maps (columns) reads.
# Maps 0–5 read 3 contiguous maps, 6–11 read 4 contiguous, 12–14 read 4 discontinuous,
# map 15 reads all six: 60 connections between maps in all.
C3_CONNECTION_TABLE: tuple[tuple[int, ...], ...] = (
    *(tuple((first + k) % 6 for k in range(3)) for first in range(6)),
    *(tuple((first + k) % 6 for k in range(4)) for first in range(6)),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


class WholeInputConv2d(nn.Conv2d):
    """C5: a convolution whose kernel is as large as its input (paper §II-B: a convolution
    rather than a fully connected layer only so that larger inputs give larger maps).

    On an input of exactly the kernel's size it is the matrix product it amounts to, which
    oneDNN runs faster than a convolution with one output position (forward and backward
    at batch 128 on a 2-core Xeon: 1.6 ms → 0.4 ms in fp32, 0.7 ms in bf16). The product
    follows the input's memory order, so channels-last stays channels-last.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        one_position = x.dim() == 4 and x.shape[-2:] == self.weight.shape[-2:]
        plain = self.padding == (0, 0) and self.groups == 1 and self.dilation == (1, 1)
        if not (one_position and plain):
            return super().forward(x)
        order = (0, 2, 3, 1) if x.is_contiguous(memory_format=torch.channels_last) else (0, 1, 2, 3)
        inputs, weight = x.permute(order).flatten(1), self.weight.permute(order).flatten(1)
        return F.linear(inputs, weight, self.bias)[:, :, None, None]


class LeNet5(FeaturesThenHead):
    """LeNet-5's shape with today's practice: ReLU and max pooling (or an ablation of it)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, pooling: str = "max"):
        super().__init__()

        def subsample(channels: int) -> nn.Module:
            if pooling == "max":  # nn.MaxPool2d(2), by a compiled kernel on the CPU
                return MaxPool2x2()
            if pooling == "avg":
                return nn.AvgPool2d(2)
            if pooling == "conv":  # the pooling ablation: a learned stride-2 convolution
                return nn.Conv2d(channels, channels, 2, stride=2)
            raise ValueError(f"pooling must be 'max', 'avg' or 'conv', not {pooling!r}")

        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, 5),
                relu1=nn.ReLU(inplace=True),
                s2=subsample(6),
                c3=nn.Conv2d(6, 16, 5),
                relu3=nn.ReLU(inplace=True),
                s4=subsample(16),
                c5=WholeInputConv2d(16, 120, 5),
                relu5=nn.ReLU(inplace=True),
            )
        )
        self.head = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                f6=nn.Linear(120, 84),
                relu6=nn.ReLU(inplace=True),
                output=nn.Linear(84, num_classes),
            )
        )


class ScaledTanh(nn.Module):
    """f(a) = A·tanh(S·a) with A = 1.7159, S = 2/3 (paper §II-B and Appendix A)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


class TrainableSubsampling(nn.Module):
    """S2/S4: each unit sums a 2×2 window, multiplies by one trainable coefficient per map,
    adds one trainable bias per map (paper §II-B). The squashing follows as its own layer."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels))
        self.bias = nn.Parameter(torch.empty(channels))
        fan_in = 4
        nn.init.uniform_(self.weight, -2.4 / fan_in, 2.4 / fan_in)  # Appendix A's ±2.4/F_i
        nn.init.uniform_(self.bias, -2.4 / fan_in, 2.4 / fan_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        window_sum = F.avg_pool2d(x, 2) * 4.0
        return window_sum * self.weight[:, None, None] + self.bias[:, None, None]


class PartialConv2d(nn.Module):
    """A convolution whose output maps each read only some input maps (C3, Table I).

    Only the connected 5×5 kernels are parameters (60·25 + 16 = 1,516 for C3), so the
    parameter count is the paper's, not that of a full convolution with masked weights.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], in_channels: int, kernel_size: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, len(table)
        self.kernel_size = (kernel_size, kernel_size)
        pairs = [(output, source) for output, sources in enumerate(table) for source in sources]
        self.register_buffer("connections", torch.tensor(pairs, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.empty(len(pairs), kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(len(table)))
        for output, sources in enumerate(table):  # Appendix A: uniform ±2.4/F_i per unit
            bound = 2.4 / (len(sources) * kernel_size * kernel_size)
            rows = self.connections[:, 0] == output
            with torch.no_grad():
                self.weight[rows] = torch.empty_like(self.weight[rows]).uniform_(-bound, bound)
                self.bias[output].uniform_(-bound, bound)

    def dense_weight(self) -> torch.Tensor:
        """The (out, in, k, k) kernel with zeros where Table I has no connection."""
        full = self.weight.new_zeros(self.out_channels, self.in_channels, *self.kernel_size)
        return full.index_put((self.connections[:, 0], self.connections[:, 1]), self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.dense_weight(), self.bias)


class EuclideanRBF(nn.Module):
    """Output layer: y_i = Σ_j (x_j − w_ij)², one fixed prototype per class (paper eq. 7).

    The paper drew its prototypes as 7×12 bitmaps of the characters with entries ±1; those
    bitmaps are not published as data, so we use fixed ±1 codes from a seeded generator,
    which keeps the property that matters: distinct, well-separated targets of F6's range.
    The layer returns −y so that a larger value means a better class, as logits do.
    """

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        generator = torch.Generator().manual_seed(1998)
        codes = torch.randint(0, 2, (num_classes, in_features), generator=generator) * 2.0 - 1
        self.register_buffer("prototypes", codes)
        self.in_features, self.out_features = in_features, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Exact differences in fp32 even under autocast: cdist's |x|²+|w|²−2x·w shortcut
        # in bf16 cancels catastrophically and derails training.
        with torch.autocast(x.device.type, enabled=False):
            difference = x.float()[:, None, :] - self.prototypes[None]
            return -difference.square().sum(dim=-1)


def _init_uniform_fan_in(module: nn.Module) -> None:
    """Appendix A: weights uniform in ±2.4/F_i, F_i the unit's fan-in."""
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        bound = 2.4 / (module.weight[0].numel())
        nn.init.uniform_(module.weight, -bound, bound)
        nn.init.uniform_(module.bias, -bound, bound)


class LeNet5Paper(FeaturesThenHead):
    """LeNet-5 as published in 1998: 60,000 trainable parameters, 340,908 connections."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1):
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                c1=nn.Conv2d(in_channels, 6, 5),
                tanh1=ScaledTanh(),
                s2=TrainableSubsampling(6),
                tanh2=ScaledTanh(),
                c3=PartialConv2d(C3_CONNECTION_TABLE, 6, 5),
                tanh3=ScaledTanh(),
                s4=TrainableSubsampling(16),
                tanh4=ScaledTanh(),
                c5=nn.Conv2d(16, 120, 5),
                tanh5=ScaledTanh(),
            )
        )
        self.head = nn.Sequential(
            OrderedDict(
                flatten=nn.Flatten(),
                f6=nn.Linear(120, 84),
                tanh6=ScaledTanh(),
                output=EuclideanRBF(84, num_classes),
            )
        )
        self.apply(_init_uniform_fan_in)


LECUN_1998 = "LeCun, Bottou, Bengio, Haffner. Gradient-based learning applied to document recognition. Proc. IEEE 86(11):2278–2324, 1998"


@register_model(
    "lenet5",
    family="LeNet",
    description="LeNet-5's layers (C1 6@5×5, S2, C3 16@5×5, S4, C5 120, F6 84) with ReLU and max pooling",
    input_size=(1, 32, 32),
    normalization=MNIST_PADDED_NORMALIZATION,
    train_defaults=dict(epochs=15, batch_size=128, lr=0.05, weight_decay=5e-4, augment=True),
    paper=LECUN_1998,
    year=1998,
    explain_layer="features.c3",  # the last maps larger than 1×1 (10×10); C5's are 1×1
)
def lenet5(num_classes: int = 10, in_channels: int = 1, pooling: str = "max") -> nn.Module:
    return LeNet5(num_classes, in_channels, pooling)


@register_model(
    "lenet5_1998",
    family="LeNet",
    description="LeNet-5 as published: scaled tanh, trainable subsampling, C3 table, RBF output",
    input_size=(1, 32, 32),
    # §II-A: background −0.1, ink 1.175, i.e. x·1.275 − 0.1 = (x − 0.1/1.275) / (1/1.275).
    normalization=(0.1 / 1.275, 1 / 1.275),
    train_defaults=dict(epochs=30, batch_size=64, lr=0.005, weight_decay=0.0, augment=True),
    paper=LECUN_1998,
    year=1998,
    explain_layer="features.c3",
)
def lenet5_1998(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return LeNet5Paper(num_classes, in_channels)
