"""Device and numeric precision: where a model runs and in which number format."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

from convnet.errors import UserError

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(name: str = "auto") -> torch.device:
    if name not in DEVICES:
        raise UserError(f"Unknown device '{name}'; use one of {', '.join(DEVICES)}.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for, but PyTorch sees no CUDA GPU here.")
    return torch.device(name)


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 matrix instructions (Intel AMX, or AVX-512 BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags for flag in (" amx_bf16", " avx512_bf16"))


def resolve_precision(name: str, device: torch.device) -> str:
    """'auto' picks bf16 where the hardware computes it natively, fp32 elsewhere."""
    if name not in PRECISIONS:
        raise UserError(f"Unknown precision '{name}'; use one of {', '.join(PRECISIONS)}.")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: matmuls and convolutions in bf16."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(precision: str) -> torch.memory_format:
    """channels_last with bf16: the layout oneDNN's AMX and cuDNN's tensor-core convolutions
    read natively, so no reorder runs around every convolution; plain NCHW with fp32."""
    return torch.channels_last if precision == "bf16" else torch.contiguous_format


def _is_channels_last(model: torch.nn.Module) -> bool:
    return any(
        p.dim() == 4
        and not p.is_contiguous()
        and p.is_contiguous(memory_format=torch.channels_last)
        for p in model.parameters()
    )


@contextlib.contextmanager
def fast_inference(model: torch.nn.Module, device: torch.device, precision: str):
    """The shared inference path (evaluate, predict, zoo, benchmarks): bf16 autocast with
    channels-last model and inputs, or plain fp32. Yields `prepare(batch)`, which puts a batch
    in the layout; the model gets its original layout back afterwards (training continues in
    it)."""
    layout = memory_format(precision)
    convert = layout == torch.channels_last and not _is_channels_last(model)
    if convert:
        model.to(memory_format=layout)

    def prepare(batch: torch.Tensor) -> torch.Tensor:
        return batch.contiguous(memory_format=layout) if batch.dim() == 4 else batch

    try:
        with autocast(device, precision):
            yield prepare
    finally:
        if convert:
            model.to(memory_format=torch.contiguous_format)
