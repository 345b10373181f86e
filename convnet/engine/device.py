"""Device and numeric precision: where a model runs and in which number format."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import torch
import torch.fx
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from convnet.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")
# fp16 is CUDA's: autocast to float16 with gradient scaling in training (torch.amp.GradScaler)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# int8 is inference's: a quantized copy of the model run by ONNX Runtime (convnet/engine/int8.py)
INFERENCE_PRECISIONS = (*PRECISIONS, "int8")


def mps_available() -> bool:
    """Whether PyTorch can use an Apple GPU (Metal Performance Shaders) here."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def machine_devices() -> str:
    """What this machine offers PyTorch, in words: "cpu", "cpu, cuda (NVIDIA H200)", …."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append(f"cuda ({torch.cuda.get_device_name(0)})")
    if mps_available():
        found.append("mps (Apple GPU)")
    return ", ".join(found)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation failure: Python's, CUDA's, or PyTorch's CPU allocator
    ("DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


# device -> (is it here?, what it is, in words)
DEVICE_CHECKS = {
    "cuda": (torch.cuda.is_available, "CUDA GPU"),
    "mps": (mps_available, "Apple GPU (MPS: PyTorch on macOS with Apple silicon)"),
}


def resolve_device(name: str = "auto") -> torch.device:
    """The device `name` names; "auto" takes a CUDA GPU, then an Apple GPU, then the CPU.
    UserError for a device this machine does not have, naming those it has."""
    if name not in DEVICES:
        raise UserError(f"Unknown device '{name}'; use one of {', '.join(DEVICES)}.")
    if name == "auto":
        return torch.device(next((d for d, (here, _) in DEVICE_CHECKS.items() if here()), "cpu"))
    if name in DEVICE_CHECKS and not DEVICE_CHECKS[name][0]():
        raise UserError(
            f"--device {name} was asked for, but PyTorch sees no {DEVICE_CHECKS[name][1]} "
            f"here. This machine has: {machine_devices()}."
        )
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matrix instructions (Intel AMX, or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" amx_bf16", " avx512_bf16"))


def resolve_precision(name: str, device: torch.device, inference: bool = False) -> str:
    """'auto' picks bf16 where the hardware computes it natively, fp32 elsewhere. UserError
    for fp16 off CUDA (naming what this machine has), and for int8 in training or where it
    cannot run (`inference`: the commands that only score)."""
    if name == "int8" and not inference:
        raise UserError(
            "--precision int8 is for inference (evaluate, predict, export, serve): a quantized "
            "model does not train. Train in bf16 or fp32, then evaluate with --precision int8."
        )
    if name == "int8":
        from convnet.engine.int8 import check_int8

        check_int8(device)
        return name
    if name not in PRECISIONS:
        raise UserError(
            f"Unknown precision '{name}'; use one of "
            f"{', '.join(INFERENCE_PRECISIONS if inference else PRECISIONS)}."
        )
    if name == "fp16" and device.type != "cuda":
        raise UserError(
            f"--precision fp16 runs on CUDA GPUs (float16 autocast, with gradient scaling in "
            f"training), not on {device.type}. This machine has: {machine_devices()}. Use "
            "--precision bf16 or fp32 here."
        )
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def cudnn_benchmark(device: torch.device, input_size: tuple[int, ...] | None) -> bool:
    """Whether cuDNN should time its convolution algorithms for each new input shape and keep
    the fastest (torch.backends.cudnn.benchmark): on CUDA with inputs of one `input_size`
    (None: sizes that vary), where a run meets a handful of shapes — the steps' batch, an
    epoch's shorter last batch, the evaluation's — and each search, once, pays for itself
    within steps. Elsewhere there is nothing to search, and with varying sizes every new
    shape would search again."""
    return device.type == "cuda" and input_size is not None


def set_cudnn_benchmark(device: torch.device, input_size: tuple[int, ...] | None) -> None:
    """Turn the search on where `cudnn_benchmark` says (a process-wide setting; never off:
    a caller of the Python API may have turned it on)."""
    if cudnn_benchmark(device, input_size):
        torch.backends.cudnn.benchmark = True


AUTOCAST_TYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: matmuls and convolutions in bf16 or fp16."""
    if precision in AUTOCAST_TYPES:
        return torch.autocast(device.type, dtype=AUTOCAST_TYPES[precision])
    return contextlib.nullcontext()


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Loss scaling for fp16 training (torch.amp.GradScaler): the loss is multiplied before
    the backward pass so small gradients do not flush to zero in float16, and the gradients
    are divided back before the step (skipped when they overflowed). A pass-through
    (disabled) for the other precisions, whose range needs none."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def memory_format(precision: str) -> torch.memory_format:
    """channels_last with bf16 or fp16: the layout oneDNN's AMX and cuDNN's tensor-core
    convolutions read natively, so no reorder runs around every convolution; plain NCHW
    with fp32."""
    return torch.channels_last if precision in AUTOCAST_TYPES else torch.contiguous_format


def layout_for(model: nn.Module) -> torch.memory_format:
    """Channels-last for networks with 2-D convolutions: oneDNN's (and cuDNN's) native
    layout, so no reorder runs around each convolution (1.3–2.5× on lenet5 training here,
    benchmarks/train_speed.py); the default layout otherwise."""
    has_convolutions = any(parameter.dim() == 4 for parameter in model.parameters())
    return torch.channels_last if has_convolutions else torch.contiguous_format


def _is_channels_last(model: torch.nn.Module) -> bool:
    return any(
        p.dim() == 4
        and not p.is_contiguous()
        and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )


def conv_batch_norm_pairs(model: torch.nn.Module) -> list[tuple[str, str]]:
    """(convolution, batch norm) module names where the batch norm reads only that
    convolution's output, found in the traced graph; [] for a model that does not trace."""
    modules = dict(model.named_modules())
    if not any(isinstance(module, nn.BatchNorm2d) for module in modules.values()):
        return []
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow: run unfolded
        return []
    calls = Counter(node.target for node in graph.nodes if node.op == "call_module")
    pairs = []
    for node in graph.nodes:
        source = node.args[0] if node.op == "call_module" and node.args else None
        if (
            isinstance(modules.get(node.target), nn.BatchNorm2d)
            and isinstance(source, torch.fx.Node)
            and source.op == "call_module"
            and type(modules.get(source.target)) is nn.Conv2d
            and len(source.users) == 1
            and calls[node.target] == calls[source.target] == 1  # neither module is reused
        ):
            pairs.append((source.target, node.target))
    return pairs


@contextlib.contextmanager
def batch_norm_folded(model: torch.nn.Module) -> Iterator[None]:
    """In evaluation, fold each batch norm into the convolution before it (w·γ/σ, (b−μ)·γ/σ+β):
    one operator fewer per pair, the same function up to rounding. Undone on exit."""
    pairs = [] if model.training else conv_batch_norm_pairs(model)
    saved = []
    with torch.no_grad():
        for conv_name, norm_name in pairs:
            conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
            saved.append((conv, conv.weight, conv.bias, norm_name, norm))
            weight, bias = fuse_conv_bn_weights(
                conv.weight,
                conv.bias,
                norm.running_mean,
                norm.running_var,
                norm.eps,
                norm.weight,
                norm.bias,
            )
            layout = torch.channels_last if _is_channels_last(conv) else torch.contiguous_format
            conv.weight = nn.Parameter(weight.contiguous(memory_format=layout), requires_grad=False)
            conv.bias = nn.Parameter(bias, requires_grad=False)
            model.set_submodule(norm_name, nn.Identity())
    try:
        yield
    finally:
        for conv, weight, bias, norm_name, norm in reversed(saved):
            conv.weight, conv.bias = weight, bias
            model.set_submodule(norm_name, norm)


@contextlib.contextmanager
def fast_inference(model: torch.nn.Module, device: torch.device, precision: str):
    """The shared inference path (evaluate, predict, zoo, benchmarks): batch norms folded into
    their convolutions (in evaluation mode), and bf16 autocast with channels-last model and
    inputs, or plain fp32. Yields `prepare(batch)`, which puts a batch in the layout; the
    model gets its original parameters and layout back afterwards (training continues)."""
    layout = memory_format(precision)
    convert = layout == torch.channels_last and not _is_channels_last(model)
    if convert:
        model.to(memory_format=layout)

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=layout) if batch.dim() == 4 else batch

    try:
        with batch_norm_folded(model), autocast(device, precision):
            yield prepare
    finally:
        if convert:
            model.to(memory_format=torch.contiguous_format)
