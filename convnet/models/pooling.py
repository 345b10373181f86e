"""2×2 max pooling with a compiled CPU kernel: LeNet-5's S2 and S4 (`MaxPool2x2`).

PyTorch's native CPU max pooling spends far longer than reading and writing its tensors
takes on LeNet-5's narrow maps (6 channels: too few for its vector loop over channels;
benchmarks/lenet_kernels.py: 6.5 ms forward for C1's maps at batch 256 in bf16 on one
thread, against 0.15 ms at copy bandwidth). The kernel in kernels/max_pool_2x2.cpp computes
the same forward pass bit for bit (ties to the first position of the window, NaN wins; the
tests compare it with `F.max_pool2d`), split over PyTorch's own OpenMP threads. Where a
gradient is taken it also writes the maxima's indices as `max_pool2d_with_indices` does,
and PyTorch's own backward pass routes the gradient by them, so training computes PyTorch's
gradients, bit for bit. The kernel is compiled at first use by `torch.utils.cpp_extension`
into PyTorch's extension cache, once per machine and source, in about a second: no PyTorch
headers are included. Where there is no compiler, the build fails, the tensor is not a
float32 or bfloat16 CPU tensor, or the pooling is being traced or exported, `MaxPool2x2` runs
the native operator. Setting CONVNET_COMPILED_KERNELS=0 (or false, off, no) turns the kernel
off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

SOURCE = Path(__file__).parent / "kernels" / "max_pool_2x2.cpp"
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
OFF = {"0", "false", "off", "no"}  # CONVNET_COMPILED_KERNELS values that turn the kernel off
_lock = threading.Lock()
_state: dict = {}  # "library": the loaded kernel or None; "reason": why it is not used


def _int64s(values) -> ctypes.Array:
    return (ctypes.c_int64 * 4)(*values)


def compiled_kernel() -> ctypes.CDLL | None:
    """The compiled kernel, built on the first call (None where it cannot be: see
    `kernel_status`)."""
    with _lock:
        if "library" in _state:
            return _state["library"]
        library, reason = None, "compiled"
        setting = os.environ.get("CONVNET_COMPILED_KERNELS", "1")
        if setting.strip().lower() in OFF:
            reason = f"turned off (CONVNET_COMPILED_KERNELS={setting})"
        else:
            try:
                # importing it warns "No CUDA runtime is found" on CPU-only machines
                logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
                from torch.utils.cpp_extension import load

                path = load(
                    name="convnet_max_pool_2x2",
                    sources=[str(SOURCE)],
                    extra_cflags=["-O3", "-fopenmp"],
                    extra_ldflags=["-fopenmp"],
                    is_python_module=False,
                    verbose=False,
                )
                library = ctypes.CDLL(str(path))
                function = library.convnet_max_pool_2x2_forward
                function.restype = ctypes.c_int
                function.argtypes = (
                    [ctypes.c_void_p] * 3
                    + [ctypes.c_int]
                    + [ctypes.c_void_p] * 3
                    + [ctypes.c_int64]
                )
            except Exception as error:  # no compiler, no ninja, a failed build: native pooling
                library, reason = None, f"not available ({type(error).__name__}: {error})"
                reason = reason.splitlines()[0][:300]
        _state.update(library=library, reason=reason)
        return library


def kernel_status() -> str:
    """Whether the compiled kernel is in use, or why not (builds it if not tried yet)."""
    compiled_kernel()
    return _state["reason"]


def _reset_for_tests() -> None:
    """Forget the loaded kernel, so that the next use tries again (tests of the fallback)."""
    with _lock:
        _state.clear()


def _layout(tensor: torch.Tensor) -> torch.memory_format:
    if tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def _forward(x: torch.Tensor, with_indices: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The pooled maps, and with `with_indices` each maximum's index in its input plane (int64,
    what `max_pool2d_with_indices` returns), split over PyTorch's threads."""
    batch, channels, height, width = x.shape
    output = torch.empty(
        (batch, channels, height // 2, width // 2), dtype=x.dtype, memory_format=_layout(x)
    )
    indices = torch.empty_like(output, dtype=torch.int64) if with_indices else None
    status = _state["library"].convnet_max_pool_2x2_forward(
        x.data_ptr(),
        output.data_ptr(),
        None if indices is None else indices.data_ptr(),
        DTYPES[x.dtype],
        _int64s(x.shape),
        _int64s(x.stride()),
        _int64s(output.stride()),
        torch.get_num_threads(),
    )
    if status:
        raise RuntimeError(f"max_pool_2x2 kernel refused dtype {x.dtype}")
    return output, indices


class _MaxPool2x2Function(torch.autograd.Function):
    """The kernel's forward pass with indices; PyTorch's own backward pass reads them."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        output, indices = _forward(x, with_indices=True)
        ctx.save_for_backward(x, indices)
        return output

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        x, indices = ctx.saved_tensors
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad_output, x, [2, 2], [2, 2], [0, 0], [1, 1], False, indices
        )


def _kernel_applies(x: torch.Tensor) -> bool:
    """A float32/bf16 CPU tensor of 4 dimensions, dense in either layout, run eagerly."""
    if x.device.type != "cpu" or x.dim() != 4 or x.dtype not in DTYPES:
        return False
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        return False
    if torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    if type(x) is not torch.Tensor or min(x.shape) == 0:  # fake tensors of export, subclasses
        return False
    if torch.compiler.is_compiling() or getattr(torch.compiler, "is_exporting", bool)():
        return False
    return compiled_kernel() is not None


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """`F.max_pool2d(x, 2)`, through the compiled kernel where it applies: its forward pass,
    and where a gradient is taken PyTorch's backward pass from the kernel's indices."""
    if not _kernel_applies(x):
        return F.max_pool2d(x, 2)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxPool2x2Function.apply(x)
    return _forward(x, with_indices=False)[0]


class MaxPool2x2(nn.MaxPool2d):
    """`nn.MaxPool2d(2)` (same repr, no state), computed by the compiled kernel on the CPU."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)
