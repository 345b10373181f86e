"""Ordinary fully connected networks: the baselines the lecture contrasts with a CNN.

`mlp` is LeCun et al. 1998's baseline with 300 and 100 hidden units (§III-C.5: 1024 inputs
of the 32×32 field); `mlp_60k` has one hidden layer sized so that its parameters match
`lenet5`'s (61,706): 1024·60 + 60 + 60·10 + 10 = 62,110, within 1%.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from convnet.models.lenet import LECUN_1998, MNIST_PADDED_NORMALIZATION
from convnet.models.registry import FeaturesThenHead, register_model


class MultilayerPerceptron(FeaturesThenHead):
    """Flatten the image, then fully connected layers with ReLU between them."""

    def __init__(
        self, hidden: tuple[int, ...], num_classes: int = 10, in_channels: int = 1, side: int = 32
    ):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        width = in_channels * side * side
        for index, units in enumerate(hidden, start=1):
            layers[f"fc{index}"] = nn.Linear(width, units)
            layers[f"relu{index}"] = nn.ReLU(inplace=True)
            width = units
        self.features = nn.Sequential(layers)
        self.head = nn.Sequential(OrderedDict(output=nn.Linear(width, num_classes)))


MLP_DEFAULTS = dict(epochs=15, batch_size=128, lr=0.05, weight_decay=1e-4, augment=False)


@register_model(
    "mlp",
    family="MLP",
    description="ordinary network 1024-300-100-10 (LeCun et al. 1998's baseline), ReLU",
    input_size=(1, 32, 32),
    normalization=MNIST_PADDED_NORMALIZATION,
    train_defaults=MLP_DEFAULTS,
    paper=LECUN_1998,
    year=1998,
)
def mlp(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return MultilayerPerceptron((300, 100), num_classes, in_channels)


@register_model(
    "mlp_60k",
    family="MLP",
    description="ordinary network 1024-60-10, as many parameters as lenet5 (within 1%)",
    input_size=(1, 32, 32),
    normalization=MNIST_PADDED_NORMALIZATION,
    train_defaults=MLP_DEFAULTS,
)
def mlp_60k(num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    return MultilayerPerceptron((60,), num_classes, in_channels)
