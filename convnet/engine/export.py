"""Export a model to a file other programs run: ONNX (onnxruntime, Netron, TensorRT, …) or
TorchScript (torch.jit.load, LibTorch in C++), with a dynamic batch axis.

What is exported is the model's plain form in evaluation mode and fp32: the layers that only
exist to keep training and inference fast on our CPUs (a convolution run as a matrix
product, a global average pool and a dropout with channels-last gradients, a channel
concatenation with dense gradients) are swapped for the standard PyTorch layers they equal,
and no batch norm is folded. The input is the normalised image, N×C×H×W at the model's input
size: (pixels in [0, 1] − mean) / std, as recorded in the file's metadata.

ONNX goes through PyTorch's torch.export-based exporter (`torch.onnx.export(dynamo=True)`,
which needs the onnxscript package); TorchScript through `torch.jit.trace`.
"""

from __future__ import annotations

import copy
import io
import json
import re
import warnings
from pathlib import Path

import torch
from torch import nn

from convnet.errors import UserError
from convnet.files import atomic_write_bytes

FORMATS = ("onnx", "torchscript")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_OPSET = 18
TRACE_BATCH = 2  # the batch size the graph is recorded with; the batch axis stays dynamic
PROTOBUF_LIMIT = 2**31 - 1  # an ONNX file above 2 GiB needs external data files
INPUT_NAME, OUTPUT_NAME = "images", "logits"
METADATA_FILE = "convnet.json"  # TorchScript: the metadata rides in the archive under this name


def plain_model(model: nn.Module) -> nn.Module:
    """A copy of `model` in evaluation mode in which every fast-path layer of ours is the
    standard layer it computes the same function as (each is a subclass that only overrides
    `forward`, so the swap keeps parameters and state_dict keys)."""
    from convnet.models.compact import FastDropout, GlobalAveragePool
    from convnet.models.lenet import WholeInputConv2d

    plain = copy.deepcopy(model).float().eval()
    plain.to(memory_format=torch.contiguous_format)
    standard = {
        WholeInputConv2d: nn.Conv2d,
        GlobalAveragePool: nn.AdaptiveAvgPool2d,
        FastDropout: nn.Dropout,
    }
    for module in plain.modules():
        if type(module) in standard:
            module.__class__ = standard[type(module)]
    for parameter in plain.parameters():
        parameter.requires_grad_(False)  # concatenate_channels then runs a plain torch.cat
    return plain


def export_model(
    model: nn.Module,
    input_size: tuple[int, int, int],
    format: str,
    out: Path | str,
    metadata: dict | None = None,
) -> int:
    """Write `model` (its plain form, fp32) to `out` atomically as `format` ("onnx" or
    "torchscript"), taking inputs N×`input_size` (C, H, W) with N dynamic. `metadata`
    (JSON-able) goes into the file: ONNX metadata_props, or an extra file of the TorchScript
    archive. Returns the file's size in bytes. UserError when the format is unknown or the
    model cannot be exported (the exporter's reason in one line)."""
    if format not in FORMATS:
        raise UserError(f"Unknown export format '{format}'. Formats: {', '.join(FORMATS)}.")
    plain = plain_model(model)
    example = torch.zeros(TRACE_BATCH, *input_size)
    metadata = {key: json.dumps(value) for key, value in (metadata or {}).items()}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and exporter notes, not the user's concern
            write = _onnx_bytes if format == "onnx" else _torchscript_bytes
            data = write(plain, example, metadata)
    except UserError:
        raise
    except Exception as error:  # the exporter's own failure: an operator it cannot express, …
        raise UserError(f"The model cannot be exported to {format}: {_reason(error)}") from None
    atomic_write_bytes(out, data)
    return len(data)


def _reason(error: BaseException) -> str:
    """The first line of the innermost cause (the exporter wraps the real reason), plain."""
    while error.__cause__ is not None:
        error = error.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _onnx_bytes(model: nn.Module, example: torch.Tensor, metadata: dict[str, str]) -> bytes:
    try:
        import onnxscript  # noqa: F401  (the exporter's own dependency; say so if missing)
    except ImportError:
        raise UserError(
            "ONNX export needs the onnx and onnxscript packages: pip install onnx onnxscript"
        ) from None
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(
        model,
        (example,),
        dynamo=True,
        verbose=False,
        opset_version=ONNX_OPSET,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: batch},),
        optimize=True,
    )
    proto = program.model_proto
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    if proto.ByteSize() > PROTOBUF_LIMIT:
        raise UserError(
            "The model's ONNX file would pass 2 GiB, the largest one file holds; "
            "export it as torchscript instead."
        )
    return proto.SerializeToString()


def _torchscript_bytes(model: nn.Module, example: torch.Tensor, metadata: dict[str, str]) -> bytes:
    traced = torch.jit.trace(model, example, check_trace=False)
    for batch in (1, TRACE_BATCH + 3):  # the recorded graph must not have fixed the batch size
        inputs = torch.randn(batch, *example.shape[1:])
        if not torch.allclose(traced(inputs), model(inputs), atol=1e-4, rtol=1e-4):
            raise ValueError(f"its traced graph disagrees with the model at batch size {batch}")
    buffer = io.BytesIO()
    extra = {METADATA_FILE: json.dumps({k: json.loads(v) for k, v in metadata.items()})}
    torch.jit.save(traced, buffer, _extra_files=extra)
    return buffer.getvalue()
