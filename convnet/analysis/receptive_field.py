"""Receptive fields: which input pixels feed each cell of a layer's feature maps.

A window layer (a convolution or a pooling) of kernel k, stride s and padding p turns a
running field (size r, step j between neighbouring cells, start t of cell 0's field, in
input pixels) into r + (k − 1)·j, j·s and t − p·j (Araujo, Norris and Sim, "Computing
receptive fields of convolutional neural networks", Distill 2019). Layers that act
on each value alone (activations) leave it as it is. Cell (row, column)'s field is the rows
t + row·j … t + row·j + r − 1 (and likewise for columns); with padding it may reach past
the input's edge, where only padding feeds it. LeNet-5 on 32×32: C1 5, S2 6, C3 14, S4 16,
C5 32 pixels a side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn
from torch.nn.modules.utils import _pair

from convnet.models.lenet import PartialConv2d, TrainableSubsampling


@dataclass(frozen=True)
class Window:
    """A window layer's geometry, per axis (rows, columns)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


def _conv_window(module: nn.Conv2d) -> Window:
    if not isinstance(module.padding, tuple) or module.dilation != (1, 1):
        raise ValueError(f"{module}: only explicit padding and no dilation are supported")
    return Window(_pair(module.kernel_size), _pair(module.stride), _pair(module.padding))


def _pool_window(module: nn.MaxPool2d | nn.AvgPool2d) -> Window:
    stride = module.stride if module.stride is not None else module.kernel_size
    return Window(_pair(module.kernel_size), _pair(stride), _pair(module.padding))


# Module type → its window; a type not here (nor a subclass of one) acts on each value alone.
WINDOWS: dict[type, Callable[[nn.Module], Window]] = {
    nn.Conv2d: _conv_window,
    PartialConv2d: lambda module: Window(_pair(module.kernel_size), (1, 1), (0, 0)),
    nn.MaxPool2d: _pool_window,
    nn.AvgPool2d: _pool_window,
    TrainableSubsampling: lambda module: Window((2, 2), (2, 2), (0, 0)),
}


def window_of(module: nn.Module) -> Window | None:
    """The module's window, or None for one that acts on each value alone."""
    for kind in type(module).__mro__:
        if kind in WINDOWS:
            return WINDOWS[kind](module)
    return None


@dataclass(frozen=True)
class Field:
    """The receptive field of a layer's cells, per axis (rows, columns), in input pixels:
    its size, the step from one cell to the next, and where cell 0's field starts."""

    size: tuple[int, int]
    step: tuple[int, int]
    start: tuple[int, int]

    def of(self, row: int, column: int) -> tuple[int, int, int, int]:
        """Cell (row, column)'s field: first row, first column, last row, last column."""
        top = self.start[0] + row * self.step[0]
        left = self.start[1] + column * self.step[1]
        return top, left, top + self.size[0] - 1, left + self.size[1] - 1

    def as_dict(self) -> dict:
        return {"size": list(self.size), "step": list(self.step), "start": list(self.start)}


def receptive_fields(layers: nn.Sequential) -> dict[str, Field]:
    """The field after each named child of `layers`, in order."""
    size, step, start = (1, 1), (1, 1), (0, 0)
    fields = {}
    for name, module in layers.named_children():
        window = window_of(module)
        if window is not None:
            size = tuple(r + (k - 1) * j for r, k, j in zip(size, window.kernel, step, strict=True))
            start = tuple(t - p * j for t, p, j in zip(start, window.padding, step, strict=True))
            step = tuple(j * s for j, s in zip(step, window.stride, strict=True))
        fields[name] = Field(size, step, start)
    return fields
