"""`convnet export`: a run or MODEL --weights W as an ONNX or TorchScript file."""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.common import (
    Command,
    add_calibration_arguments,
    check_calibration,
    check_counts,
    emit,
    log,
)
from convnet.commands.evaluate import WEIGHTS_HELP, load_target
from convnet.errors import UserError

EXPORT_FORMATS = ("onnx", "torchscript")  # convnet.engine.export.FORMATS, without importing torch


def configure_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="RUN_DIR|MODEL",
        help="a run directory, or a registered model name with --weights",
    )
    parser.add_argument("--weights", metavar="NAME_OR_FILE", help=WEIGHTS_HELP)
    parser.add_argument(
        "--format",
        choices=EXPORT_FORMATS,
        default="onnx",
        help="onnx (onnxruntime, Netron) or torchscript (torch.jit.load, LibTorch)",
    )
    parser.add_argument("--out", metavar="FILE", required=True, help="the file to write")
    parser.add_argument(
        "--precision", choices=("fp32", "int8"), default="fp32",
        help="fp32, or int8 (ONNX only; a CPU with VNNI: quantized by ONNX Runtime, QDQ)",
    )  # fmt: skip
    add_calibration_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def run_export(args: argparse.Namespace) -> int:
    from convnet import __version__
    from convnet.engine.export import INPUT_NAME, ONNX_OPSET, OUTPUT_NAME, export_model
    from convnet.files import check_destination, ensure_writable

    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a file name, e.g. {out / 'model.onnx'}.")
    check_destination(out)  # a file where a folder should be, before loading anything
    check_counts(args, "calibration_images")
    check_calibration(args, args.precision)
    if args.precision == "int8":
        import torch

        from convnet.engine.int8 import check_int8

        check_int8(torch.device("cpu"))
        if args.format != "onnx":
            raise UserError("--precision int8 writes ONNX (QDQ); drop --format torchscript.")
    loaded = load_target(args)
    ensure_writable(out.parent)  # before the slow part
    mean, std = loaded.normalization
    channels = loaded.input_size[0]
    normalization = {
        "mean": list(mean) if isinstance(mean, tuple) else [mean] * channels,
        "std": list(std) if isinstance(std, tuple) else [std] * channels,
    }
    metadata = {
        "model": loaded.name,
        "classes": list(loaded.class_names),
        "input_size": list(loaded.input_size),
        "normalization": normalization,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "convnet_version": __version__,
    }
    if args.precision == "int8":
        size = _export_int8(loaded, args, out, metadata)
    else:
        size = export_model(loaded.model, loaded.input_size, args.format, out, metadata)
    result = {
        **metadata,
        "format": args.format,
        "opset": ONNX_OPSET if args.format == "onnx" else None,
        "out": str(out),
        "bytes": size,
        "precision": args.precision,
        "weights": args.weights or str(Path(args.target) / "model.safetensors"),
    }
    shape = "×".join(str(side) for side in loaded.input_size)
    text = (
        f"Wrote {out} ({args.format}{', int8 QDQ' if args.precision == 'int8' else ''}, "
        f"{size:,} bytes): input '{INPUT_NAME}' N×{shape} fp32 "
        f"(pixels in [0, 1], minus mean {normalization['mean']}, divided by std "
        f"{normalization['std']}), any batch size N; output '{OUTPUT_NAME}' "
        f"N×{len(loaded.class_names)}."
    )
    emit(args, result, text)
    return 0


def _export_int8(loaded, args: argparse.Namespace, out: Path, metadata: dict) -> int:
    """The int8 form (made or found in the cache, as `--precision int8` evaluates it) with
    the same metadata as the fp32 file, written to `out`; returns its size."""
    import json

    import onnx

    from convnet.engine.int8 import int8_without_data
    from convnet.files import atomic_write_bytes

    quantized = int8_without_data(loaded, args.calibration, args.calibration_images, log)
    proto = onnx.load(str(quantized.path))
    for key, value in {**metadata, "int8": quantized.note}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    data = proto.SerializeToString()
    atomic_write_bytes(out, data)
    return len(data)


COMMANDS: dict[str, Command] = {
    "export": Command(
        "write a model as an ONNX or TorchScript file (dynamic batch axis)",
        configure_export,
        run_export,
    ),
}
