"""2×2 max pooling with a compiled CPU kernel: LeNet-5's S2 and S4 (`MaxPool2x2`).

PyTorch's native CPU max pooling spends far longer than reading and writing its tensors
takes on LeNet-5's narrow maps (6 and 16 channels; benchmarks/lenet_kernels.py: 6.5 ms
forward for C1's maps at batch 256 in bf16, against 0.5 ms at copy bandwidth). The kernel in
kernels/max_pool_2x2.cpp does the same arithmetic in one pass, bit for bit (ties to the
first position of the window, NaN wins, gradients routed to that position; the tests compare
it with `F.max_pool2d`). It is compiled at first use by `torch.utils.cpp_extension` into
PyTorch's extension cache, once per machine and source, in about a second: no PyTorch
headers are included. Where there is no compiler, the build fails, the tensor is not a
float32 or bfloat16 CPU tensor, or the pooling is being traced or exported, `MaxPool2x2`
runs the native operator. Setting CONVNET_COMPILED_KERNELS=0 turns the kernel off.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from pathlib import Path

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

SOURCE = Path(__file__).parent / "kernels" / "max_pool_2x2.cpp"
DTYPES = {torch.float32: 0, torch.bfloat16: 1}
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
        if os.environ.get("CONVNET_COMPILED_KERNELS", "1") == "0":
            reason = "turned off (CONVNET_COMPILED_KERNELS=0)"
        else:
            try:
                # importing it warns "No CUDA runtime is found" on CPU-only machines
                logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
                from torch.utils.cpp_extension import load

                path = load(
                    name="convnet_max_pool_2x2",
                    sources=[str(SOURCE)],
                    extra_cflags=["-O3"],
                    is_python_module=False,
                    verbose=False,
                )
                library = ctypes.CDLL(str(path))
                for name in ("convnet_max_pool_2x2_forward", "convnet_max_pool_2x2_backward"):
                    function = getattr(library, name)
                    function.restype = ctypes.c_int
                    function.argtypes = [
                        ctypes.c_void_p,
                        ctypes.c_void_p,
                        ctypes.c_void_p,
                        ctypes.c_int,
                        ctypes.c_void_p,
                        ctypes.c_void_p,
                        ctypes.c_void_p,
                    ]
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


def _pointer(tensor: torch.Tensor | None) -> int | None:
    return None if tensor is None else tensor.data_ptr()


def _forward(library: ctypes.CDLL, x: torch.Tensor, keep_argmax: bool):
    batch, channels, height, width = x.shape
    output = torch.empty(
        (batch, channels, height // 2, width // 2), dtype=x.dtype, memory_format=_layout(x)
    )
    argmax = torch.empty_like(output, dtype=torch.uint8) if keep_argmax else None
    status = library.convnet_max_pool_2x2_forward(
        _pointer(x),
        _pointer(output),
        _pointer(argmax),
        DTYPES[x.dtype],
        _int64s(x.shape),
        _int64s(x.stride()),
        _int64s(output.stride()),
    )
    if status:
        raise RuntimeError(f"max_pool_2x2 kernel refused dtype {x.dtype}")
    return output, argmax


class _MaxPool2x2Function(torch.autograd.Function):
    """Autograd for the kernel: keeps one byte per output (which of the four won)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        output, argmax = _forward(_state["library"], x, keep_argmax=True)
        ctx.save_for_backward(argmax)
        ctx.input_shape, ctx.input_strides = x.shape, x.stride()
        ctx.layout = _layout(x)
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (argmax,) = ctx.saved_tensors
        library = _state["library"]
        # the kernel reads the gradient with the argmax's strides
        grad_output = grad_output.to(argmax.device).contiguous(memory_format=ctx.layout)
        if grad_output.stride() != argmax.stride():
            grad_output = torch.empty_like(argmax, dtype=grad_output.dtype).copy_(grad_output)
        grad_input = torch.empty(ctx.input_shape, dtype=grad_output.dtype, memory_format=ctx.layout)
        if ctx.input_shape[-2] % 2 or ctx.input_shape[-1] % 2:  # a row or column no window reads
            grad_input.zero_()
        library.convnet_max_pool_2x2_backward(
            _pointer(grad_output),
            _pointer(argmax),
            _pointer(grad_input),
            DTYPES[grad_output.dtype],
            _int64s(ctx.input_shape),
            _int64s(grad_input.stride()),
            _int64s(argmax.stride()),
        )
        return grad_input


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
    """`F.max_pool2d(x, 2)`, through the compiled kernel where it applies."""
    if not _kernel_applies(x):
        return F.max_pool2d(x, 2)
    if torch.is_grad_enabled() and x.requires_grad:
        return _MaxPool2x2Function.apply(x)
    return _forward(_state["library"], x, keep_argmax=False)[0]


class MaxPool2x2(nn.MaxPool2d):
    """`nn.MaxPool2d(2)` (same repr, no state), computed by the compiled kernel on the CPU."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)
