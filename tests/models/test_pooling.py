"""LeNet-5's compiled 2×2 max pooling (convnet/models/pooling.py): bit for bit PyTorch's
`F.max_pool2d(x, 2)`, its indices and its gradients; PyTorch's own operator where the kernel
cannot be built."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from convnet.models import get_model, pooling
from convnet.models.pooling import MaxPool2x2, kernel_status, max_pool_2x2

BITS = {torch.float32: torch.int32, torch.bfloat16: torch.int16}
LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


@pytest.fixture
def compiled():
    """The compiled kernel; skipped, saying why, on a machine that cannot build it."""
    pooling._reset_for_tests()
    if pooling.compiled_kernel() is None:
        pytest.skip(f"the pooling kernel is not built here: {kernel_status()}")
    return pooling.compiled_kernel()


@pytest.fixture
def without_compiler(monkeypatch):
    """As on a machine where the build fails (no compiler): cpp_extension.load raises."""
    import torch.utils.cpp_extension

    def no_compiler(*args, **kwargs):
        raise RuntimeError("Error building extension: c++: command not found")

    monkeypatch.setattr(torch.utils.cpp_extension, "load", no_compiler)
    pooling._reset_for_tests()
    yield
    pooling._reset_for_tests()


def awkward_maps(shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Values from a small set, so that windows hold ties (first position wins), with signed
    zeros, infinities and NaN (NaN wins: the last one of a window) mixed in."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.tensor(
        [-2.0, -1.0, -0.0, 0.0, 0.5, 1.0, 3.0, float("inf"), float("-inf"), float("nan")]
    )
    weights = torch.tensor([4.0, 4, 3, 3, 4, 4, 4, 1, 1, 1])
    picks = torch.multinomial(weights, int(torch.tensor(shape).prod()), True, generator=generator)
    return values[picks].reshape(shape).to(dtype)


def bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's bits, so that -0 != +0 in a comparison."""
    return tensor.contiguous().view(BITS[tensor.dtype])


def same_bits(ours: torch.Tensor, native: torch.Tensor) -> bool:
    """Bit for bit equal, NaN for NaN. A NaN's own bits are not compared: PyTorch's native
    bfloat16 pooling writes NaN as 0xFFFF in the channels its vector loop covers and as
    0x7FC0 in the rest (its scalar loop), which depends on the CPU's vector width."""
    nan = ours.isnan()
    return torch.equal(nan, native.isnan()) and torch.equal(bits(ours)[~nan], bits(native)[~nan])


def counting_kernel_calls(monkeypatch) -> list:
    """The kernel's calls, one entry each, from here on."""
    calls = []
    forward = pooling._forward

    def counted(x, with_indices):
        calls.append(tuple(x.shape))
        return forward(x, with_indices)

    monkeypatch.setattr(pooling, "_forward", counted)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    "shape",
    [(8, 6, 28, 28), (4, 16, 10, 10), (3, 5, 7, 9), (2, 1, 2, 2), (1, 33, 4, 6), (24, 6, 28, 28)],
)
def test_the_forward_pass_is_bit_for_bit_pytorchs(
    compiled, dtype, layout, shape, threads, monkeypatch
):
    """(24, 6, 28, 28) is large enough to be split over the threads."""
    calls = counting_kernel_calls(monkeypatch)
    x = awkward_maps(shape, dtype, sum(shape)).contiguous(memory_format=LAYOUTS[layout])
    with torch_threads(threads):
        ours, native = max_pool_2x2(x), F.max_pool2d(x, 2)
    assert calls == [shape]
    assert ours.stride() == native.stride() and same_bits(ours, native)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=list(LAYOUTS))
@pytest.mark.parametrize("shape", [(24, 6, 28, 28), (4, 16, 10, 10), (3, 5, 7, 9)])
def test_training_takes_the_kernels_maxima_and_pytorchs_backward(
    compiled, dtype, layout, shape, monkeypatch
):
    """Where a gradient is taken the kernel also writes the maxima's indices, as
    `max_pool2d_with_indices` does, and PyTorch's backward pass routes the gradient by them:
    the same gradients, bit for bit, as PyTorch's pooling (ties, signed zeros, NaN)."""
    calls = counting_kernel_calls(monkeypatch)
    maps = awkward_maps(shape, dtype, 7 + sum(shape)).contiguous(memory_format=LAYOUTS[layout])
    with torch.no_grad():
        _, indices = pooling._forward(maps, with_indices=True)
    _, native_indices = torch.ops.aten.max_pool2d_with_indices(maps, [2, 2], [2, 2])
    assert indices.stride() == native_indices.stride() and torch.equal(indices, native_indices)
    calls.clear()
    ours, native = maps.clone().requires_grad_(), maps.clone().requires_grad_()
    output = max_pool_2x2(ours)
    assert calls == [shape] and output.grad_fn.name() == "_MaxPool2x2FunctionBackward"
    gradient = awkward_maps(output.shape, dtype, 3).nan_to_num(0.0, 1.0, -1.0)
    output.backward(gradient.contiguous(memory_format=LAYOUTS[layout]))
    F.max_pool2d(native, 2).backward(gradient.contiguous(memory_format=LAYOUTS[layout]))
    assert ours.grad.stride() == native.grad.stride() and same_bits(ours.grad, native.grad)


@contextlib.contextmanager
def torch_threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_lenet5_infers_with_the_kernel_as_with_pytorchs_pooling(compiled, monkeypatch):
    calls = counting_kernel_calls(monkeypatch)
    torch.manual_seed(0)
    model = get_model("lenet5").to(memory_format=torch.channels_last).eval()
    assert isinstance(model.features.s2, MaxPool2x2) and isinstance(model.features.s4, MaxPool2x2)
    reference = get_model("lenet5").to(memory_format=torch.channels_last).eval()
    reference.load_state_dict(model.state_dict())
    reference.features.s2, reference.features.s4 = nn.MaxPool2d(2), nn.MaxPool2d(2)
    images = torch.randn(16, 1, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        assert torch.equal(model(images), reference(images))
    assert calls == [(16, 6, 28, 28), (16, 16, 10, 10)]


def test_without_a_compiler_the_native_operator_runs(without_compiler):
    assert pooling.compiled_kernel() is None
    assert kernel_status().startswith("not available (RuntimeError: Error building extension")
    x = torch.randn(2, 6, 28, 28, requires_grad=True)
    output = MaxPool2x2()(x)
    assert output.grad_fn.name() == "MaxPool2DWithIndicesBackward0"  # PyTorch's own
    assert torch.equal(output, F.max_pool2d(x, 2))
    output.sum().backward()
    assert x.grad is not None


@pytest.mark.parametrize("setting", ["0", "false", "Off", "no"])
def test_the_kernel_can_be_turned_off(monkeypatch, setting):
    monkeypatch.setenv("CONVNET_COMPILED_KERNELS", setting)
    pooling._reset_for_tests()
    try:
        assert pooling.compiled_kernel() is None and kernel_status().startswith("turned off")
    finally:
        pooling._reset_for_tests()


def test_traced_and_unsupported_inputs_take_the_native_operator(compiled):
    traced = torch.jit.trace(MaxPool2x2(), torch.randn(1, 6, 28, 28))
    assert "max_pool2d" in str(traced.graph)
    for unsupported in (
        torch.randn(6, 28, 28),
        torch.randn(1, 6, 28, 28, dtype=torch.float64),
        torch.randn(1, 6, 28, 56)[..., ::2],
    ):
        assert not pooling._kernel_applies(unsupported)
        assert torch.equal(max_pool_2x2(unsupported), F.max_pool2d(unsupported, 2))


def test_building_the_model_compiles_nothing():
    """The kernel is built at the first pooling, not on import (`convnet --help` stays fast)."""
    code = (
        "import sys; import convnet.models; from convnet.models import get_model; "
        "get_model('lenet5'); from convnet.models import pooling; "
        "print(pooling._state == {}, 'torch.utils.cpp_extension' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.split() == ["True", "False"]
