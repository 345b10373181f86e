"""2×2 max pooling with a compiled CPU kernel for inference: LeNet-5's S2 and S4 (`MaxPool2x2`).

PyTorch's native CPU max pooling spends far longer than reading and writing its tensors
takes on LeNet-5's narrow maps (6 channels: too few for its vector loop over channels;
benchmarks/lenet_kernels.py: 6.5 ms forward for C1's maps at batch 256 in bf16 on one
thread, against 0.15 ms at copy bandwidth). The kernel in kernels/max_pool_2x2.cpp computes
the same forward pass in one single-threaded pass, bit for bit (ties to the first position of
the window, NaN wins; the tests compare it with `F.max_pool2d`), for evaluation, prediction
and serving. Training takes PyTorch's own forward and backward: they run on all of PyTorch's
threads, and `convnet train lenet5` ran 1.18× (1.05-1.27×) the images/s with them on two
threads as with this kernel's single-threaded forward and backward, and 0.96× (0.91-0.99×)
on one (benchmarks/train_speed_compare.json, train_speed_compare_1_thread.json). The kernel
is compiled at first use by `torch.utils.cpp_extension` into PyTorch's extension cache, once
per machine and source, in about a second: no PyTorch headers are included. Where there is
no compiler, the build fails, the tensor is not a float32 or bfloat16 CPU tensor, or the
pooling is being traced or exported, `MaxPool2x2` runs the native operator. Setting
CONVNET_COMPILED_KERNELS=0 (or false, off, no) turns the kernel off.
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
                    extra_cflags=["-O3"],
                    is_python_module=False,
                    verbose=False,
                )
                library = ctypes.CDLL(str(path))
                function = library.convnet_max_pool_2x2_forward
                function.restype = ctypes.c_int
                function.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int] + [ctypes.c_void_p] * 3
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


def _forward(library: ctypes.CDLL, x: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = x.shape
    output = torch.empty(
        (batch, channels, height // 2, width // 2), dtype=x.dtype, memory_format=_layout(x)
    )
    status = library.convnet_max_pool_2x2_forward(
        x.data_ptr(),
        output.data_ptr(),
        DTYPES[x.dtype],
        _int64s(x.shape),
        _int64s(x.stride()),
        _int64s(output.stride()),
    )
    if status:
        raise RuntimeError(f"max_pool_2x2 kernel refused dtype {x.dtype}")
    return output


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
    """`F.max_pool2d(x, 2)`, through the compiled kernel where it applies and no gradient is
    taken; in training, PyTorch's own forward and backward (the module docstring says why)."""
    if (torch.is_grad_enabled() and x.requires_grad) or not _kernel_applies(x):
        return F.max_pool2d(x, 2)
    return _forward(_state["library"], x)


class MaxPool2x2(nn.MaxPool2d):
    """`nn.MaxPool2d(2)` (same repr, no state), computed by the compiled kernel on the CPU
    where no gradient is taken."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_2x2(x)
