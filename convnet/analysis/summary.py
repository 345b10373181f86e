"""Per-layer accounting of a model: output shape, parameters, connections, MACs, depth.

Connections follow LeCun et al. 1998: one per multiply-accumulate a unit performs,
counting its bias as one more (so C1 has 28·28·6·(25+1) = 122,304). MACs are the
multiply-accumulates without the bias, the unit torchvision's "GFLOPS" figures use.
Depth is the number of weight layers (convolution or fully connected) on the longest path
from input to output of the traced graph (None for a model torch.fx cannot trace).

Any nn.Module can be summarized: the layers counted are the modules of COUNTERS' types (and
their subclasses); other modules holding parameters are listed with zero counts, and
operations called as functions (F.conv2d in a forward) are not counted —
`torch.utils.flop_counter.FlopCounterMode` counts those (the tests compare the two).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import fx, nn

from convnet.models.lenet import EuclideanRBF, PartialConv2d, TrainableSubsampling


@dataclass
class LayerSummary:
    name: str
    type: str
    output_shape: list[int]
    params: int
    trainable_params: int
    connections: int
    macs: int
    activation_bytes: int


@dataclass
class ModelSummary:
    """The per-layer rows and the totals; str() is the table `convnet summary` prints."""

    model: str
    input_size: list[int]
    layers: list[LayerSummary]
    total: dict

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return summary_table(self)


def summary_table(summary: ModelSummary) -> str:
    """One line per layer (shape, parameters, connections, MACs, activation KiB), the totals."""
    width = max([22, *(len(layer.name) + 2 for layer in summary.layers)])
    lines = [
        f"{'layer':<{width}}{'type':<20}{'output':>14}{'params':>13}{'connections':>15}"
        f"{'MACs':>15}{'activ. KiB':>12}"
    ]
    for layer in summary.layers:
        shape = "×".join(map(str, layer.output_shape))
        lines.append(
            f"{layer.name:<{width}}{layer.type:<20}{shape:>14}{layer.trainable_params:>13,}"
            f"{layer.connections:>15,}{layer.macs:>15,}{layer.activation_bytes / 2**10:>12,.1f}"
        )
    total = summary.total
    depth = "?" if total["depth"] is None else total["depth"]
    lines.append("-" * (width + 89))
    lines.append(
        f"{'total':<{width}}{'depth ' + str(depth):<20}{'':>14}{total['trainable_params']:>13,}"
        f"{total['connections']:>15,}{total['macs']:>15,}{total['activation_bytes'] / 2**10:>12,.1f}"
    )
    depth_text = (
        "depth unknown (the model does not trace)"
        if total["depth"] is None
        else f"depth {depth} weight layers"
    )
    lines.append(
        f"parameters {total['params']:,} ({total['weight_bytes'] / 2**20:.2f} MiB of weights), "
        f"{macs_text(total['macs'])}, activations {total['activation_bytes'] / 2**20:,.2f} MiB "
        f"per image, {depth_text}"
    )
    return "\n".join(lines)


def macs_text(macs: int) -> str:
    """Multiply-accumulates per image in a unit that shows them: 11.514 GMACs for ResNet-152,
    416,520 MACs for LeNet-5 (which "0.000 GMACs" would hide)."""
    return f"{macs / 1e9:.3f} GMACs" if macs >= 1e8 else f"{macs:,} MACs"


def _first_tensor(output: object) -> torch.Tensor | None:
    """The output, or the first tensor in a tuple or list of outputs (nn.LSTM, attention)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((t for t in map(_first_tensor, output) if t is not None), None)
    return None


def _per_example(output: torch.Tensor) -> int:
    return output[0].numel()


def _conv_counts(module: nn.Conv2d, output: torch.Tensor) -> tuple[int, int]:
    fan_in = module.weight[0].numel()  # in_channels / groups × kernel area
    macs = _per_example(output) * fan_in
    return macs + (_per_example(output) if module.bias is not None else 0), macs


def _partial_conv_counts(module: PartialConv2d, output: torch.Tensor) -> tuple[int, int]:
    positions = output.shape[-2] * output.shape[-1]
    macs = positions * module.weight.numel()
    return macs + positions * module.bias.numel(), macs


def _linear_counts(module: nn.Linear, output: torch.Tensor) -> tuple[int, int]:
    macs = _per_example(output) * module.in_features
    return macs + (_per_example(output) if module.bias is not None else 0), macs


def _rbf_counts(module: EuclideanRBF, output: torch.Tensor) -> tuple[int, int]:
    macs = module.out_features * module.in_features
    return macs, macs


def _subsampling_counts(module: TrainableSubsampling, output: torch.Tensor) -> tuple[int, int]:
    # Four inputs plus the bias per unit (S2: 14·14·6·5 = 5,880); one multiply per unit.
    return _per_example(output) * 5, _per_example(output)


def _window_pool_counts(module: nn.Module, output: torch.Tensor) -> tuple[int, int]:
    kernel = module.kernel_size
    area = kernel * kernel if isinstance(kernel, int) else kernel[0] * kernel[1]
    return _per_example(output) * area, 0


def _no_counts(module: nn.Module, output: torch.Tensor) -> tuple[int, int]:
    return 0, 0


# Module type -> (connections, MACs) per example. Layers of other types that hold no
# parameters (activations, flatten, dropout) are not rows of the table.
COUNTERS: dict[type, Callable[[nn.Module, torch.Tensor], tuple[int, int]]] = {
    nn.Conv1d: _conv_counts,
    nn.Conv2d: _conv_counts,
    nn.Conv3d: _conv_counts,
    PartialConv2d: _partial_conv_counts,
    nn.Linear: _linear_counts,
    EuclideanRBF: _rbf_counts,
    TrainableSubsampling: _subsampling_counts,
    nn.MaxPool2d: _window_pool_counts,
    nn.AvgPool2d: _window_pool_counts,
    nn.BatchNorm2d: _no_counts,
    nn.AdaptiveAvgPool2d: _no_counts,
    nn.AdaptiveMaxPool2d: _no_counts,
}
# Layers that carry weights through which a path counts one more in depth.
WEIGHT_LAYERS: tuple[type, ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
    PartialConv2d,
    EuclideanRBF,
)
FUNCTIONAL_WEIGHT_LAYERS = (
    nn.functional.conv1d,
    nn.functional.conv2d,
    nn.functional.conv3d,
    nn.functional.linear,
)


def _counter_for(module: nn.Module) -> Callable | None:
    for module_type in type(module).__mro__:
        if module_type in COUNTERS:
            return COUNTERS[module_type]
    return None


def _is_leaf(module: nn.Module) -> bool:
    return _counter_for(module) is not None or not list(module.children())


def _shown(module: nn.Module) -> bool:
    return _counter_for(module) is not None or any(True for _ in module.parameters(recurse=False))


class _LeafTracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return _is_leaf(module) or super().is_leaf_module(module, qualified_name)


def traced_depth(model: nn.Module) -> int | None:
    """Weight layers on the longest input→output path of the torch.fx graph; None when the
    model does not trace (data-dependent control flow, say)."""
    try:
        graph = _LeafTracer().trace(model)
    except Exception:  # torch.fx raises many kinds (TraceError, TypeError, …)
        return None
    modules = dict(model.named_modules())
    depth: dict[fx.Node, int] = {}
    for node in graph.nodes:
        inputs = [depth[argument] for argument in node.all_input_nodes if argument in depth]
        here = max(inputs, default=0)
        if (
            node.op == "call_module"
            and isinstance(modules[node.target], WEIGHT_LAYERS)
            or node.op == "call_function"
            and node.target in FUNCTIONAL_WEIGHT_LAYERS
        ):
            here += 1
        depth[node] = here
    return max(depth[node] for node in graph.nodes if node.op == "output")


def summarize(model: nn.Module, input_size: tuple[int, ...], name: str = "") -> ModelSummary:
    """Run one example of `input_size` (C, H, W for images: no batch dimension) through any
    `model` and account for every layer that computes. Errors of the forward pass (an input
    the model cannot take) propagate as they are."""
    rows: list[LayerSummary] = []
    handles = []

    def record(layer_name: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: object) -> None:
            output = _first_tensor(output)
            if output is None:
                return
            counter = _counter_for(module) or _no_counts
            connections, macs = counter(module, output)
            own = list(module.parameters(recurse=False))
            rows.append(
                LayerSummary(
                    name=layer_name,
                    type=type(module).__name__,
                    output_shape=list(output.shape[1:]),
                    params=sum(p.numel() for p in own),
                    trainable_params=sum(p.numel() for p in own if p.requires_grad),
                    connections=int(connections),
                    macs=int(macs),
                    activation_bytes=_per_example(output) * output.element_size(),
                )
            )

        return hook

    for layer_name, module in model.named_modules():
        if layer_name and _is_leaf(module) and _shown(module):
            handles.append(module.register_forward_hook(record(layer_name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            # On the model's device: a model built on "meta" gives shapes without arithmetic.
            device = next(model.parameters(), torch.empty(0)).device
            model(torch.zeros(1, *input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    parameters = list(model.parameters())
    total = {
        "params": sum(p.numel() for p in parameters),
        "trainable_params": sum(p.numel() for p in parameters if p.requires_grad),
        "connections": sum(row.connections for row in rows),
        "macs": sum(row.macs for row in rows),
        "depth": traced_depth(model),
        "weight_bytes": sum(p.numel() * p.element_size() for p in parameters),
        "activation_bytes": sum(row.activation_bytes for row in rows),
    }
    return ModelSummary(name, list(input_size), rows, total)


# Published totals a summary can be compared with (the lecture's claim 4).
LENET5_SOURCES = {
    "LeCun et al. 1998 (Proc. IEEE)": {"trainable_params": 60_000, "connections": 340_908},
    "the lecture": {"trainable_params": 14_000, "connections": 187_000},
}


def matching_sources(summary: ModelSummary, tolerance: float = 0.02) -> dict[str, bool]:
    """Which published LeNet-5 totals this summary's counts agree with (within 2%)."""
    result = {}
    for source, figures in LENET5_SOURCES.items():
        result[source] = all(
            abs(summary.total[key] - value) <= tolerance * value for key, value in figures.items()
        )
    return result
