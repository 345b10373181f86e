"""The served CNN's anatomy, for the page to explain and recompute its cells: each feature
layer's kind, window, receptive field and the squashing after it; the pooling layers' own
parameters; and C3's kernels with the S2 maps each C3 map reads — all six in `lenet5`, the
paper's Table I in `lenet5_1998` (LeCun et al. 1998; `convnet.models.lenet`).

Read from the modules themselves, so a run of another LeNet-5 variant (average pooling,
the learned-pooling ablation, the 1998 network) is described as it is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from convnet.analysis.receptive_field import receptive_fields, window_of
from convnet.models.lenet import EuclideanRBF, PartialConv2d, ScaledTanh, TrainableSubsampling

CNN_LAYERS = ("c1", "s2", "c3", "s4", "c5")  # LeNet-5's feature layers, in order
HEAD_LAYERS = ("f6", "output")
# The squashing after a layer, by module type, as the page's scripts name it.
ACTIVATIONS: dict[type, str] = {nn.ReLU: "relu", ScaledTanh: "scaled_tanh"}
# How a subsampling layer (S2, S4) makes a cell from its window; a convolution there is the
# pooling ablation's learned 2×2, stride-2 convolution across all maps ("learned").
POOLING_KINDS: dict[type, str] = {
    nn.MaxPool2d: "max",
    nn.AvgPool2d: "average",
    TrainableSubsampling: "subsampling",  # 1998: window sum × coefficient + bias per map
    nn.Conv2d: "learned",
}
# The output layer: scores as weighted sums, or (1998) minus the squared distance of F6 to
# each class's fixed prototype.
OUTPUT_KINDS: dict[type, str] = {nn.Linear: "linear", EuclideanRBF: "rbf"}


def _by_type(table: dict[type, object], module: nn.Module | None, default: object) -> object:
    for kind in type(module).__mro__:
        if kind in table:
            return table[kind]
    return default


def activation_after(layers: nn.Sequential, name: str) -> str:
    """The squashing that follows layer `name` ('relu', 'scaled_tanh' or 'identity')."""
    children = list(layers.named_children())
    names = [child for child, _ in children]
    position = names.index(name) + 1
    following = children[position][1] if position < len(children) else None
    return _by_type(ACTIVATIONS, following, "identity")


def _connections(module: nn.Module) -> tuple[torch.Tensor, list[list[int]]]:
    """C3's (out, in, k, k) kernel, zero where no connection, and the inputs of each map."""
    if isinstance(module, PartialConv2d):
        table = [[] for _ in range(module.out_channels)]
        for output, source in module.connections.tolist():
            table[output].append(source)
        return module.dense_weight(), table
    if module.groups != 1:
        raise ValueError("C3 with groups is not described")
    return module.weight, [list(range(module.in_channels))] * module.out_channels


def layers(model: nn.Module) -> list[dict]:
    """Per feature layer: key, kind, window (kernel, stride, padding per axis), receptive
    field in input pixels (size, step, start per axis), squashing after it, maps."""
    features = model.features
    fields = receptive_fields(features)
    described = []
    for name in CNN_LAYERS:
        module = getattr(features, name)
        window = window_of(module)
        kind = "convolution" if name.startswith("c") else _by_type(POOLING_KINDS, module, "other")
        described.append(
            {
                "key": name,
                "kind": kind,
                "kernel": list(window.kernel) if window else None,
                "stride": list(window.stride) if window else None,
                "padding": list(window.padding) if window else None,
                "field": fields[name].as_dict(),
                "activation": activation_after(features, name),
            }
        )
    return described


def anatomy(model: nn.Module, rounded: Callable[[torch.Tensor], list]) -> dict:
    """The layers, the pooling parameters of a 1998 subsampling layer, C3's kernels, and
    the output layer's kind (`rounded`: how tensors become JSON)."""
    features = model.features
    pooling = {}
    for name in ("s2", "s4"):
        module = getattr(features, name)
        if isinstance(module, TrainableSubsampling):
            pooling[name] = {"weight": rounded(module.weight), "bias": rounded(module.bias)}
    weight, sources = _connections(features.c3)
    return {
        "layers": layers(model),
        "output": _by_type(OUTPUT_KINDS, getattr(model.head, "output", None), "other"),
        "pooling": pooling,
        "c3": {
            "sources": sources,
            "weights": [
                [rounded(weight[output, source]) for source in inputs]
                for output, inputs in enumerate(sources)
            ],
            "bias": rounded(features.c3.bias),
            "activation": activation_after(features, "c3"),
        },
    }
