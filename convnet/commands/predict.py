"""`convnet predict`: image files classified as the model's training data was prepared, in
batches, so that memory stays flat however many files are given.

Each file is decoded and prepared in a DataLoader (worker processes for many files), a batch
at a time; an unreadable file gets an item with "error" instead of "top" and the others are
answered. The exit status is 0 when at least one file was answered, 2 when none was.
"""

from __future__ import annotations

import argparse

from convnet.commands.common import (
    JSON_HELP,
    Command,
    add_device_arguments,
    add_download_argument,
    add_threads_argument,
    apply_threads,
    check_calibration,
    check_counts,
    download_if_asked,
    emit,
    log,
)
from convnet.commands.evaluate import OWN_WEIGHTS, TARGET_HELP, WEIGHTS_HELP, load_target
from convnet.engine.preparations import PREPARATION_HELP, PREPARATIONS
from convnet.errors import UserError

# Files per forward pass: 64 photos of 224² are 38 MB of floats; digits are far smaller.
BATCH_SIZE = 64
# From this many files on, decoding runs in worker processes (starting them takes a second).
WORKERS_FROM = 128
# From this many files on, a progress bar on standard error.
PROGRESS_FROM = 2 * BATCH_SIZE


def configure_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN_DIR|MODEL", help=TARGET_HELP)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    parser.add_argument("--weights", metavar="NAME_OR_FILE", help=WEIGHTS_HELP + OWN_WEIGHTS)
    add_download_argument(parser)
    parser.add_argument("--top", type=int, default=3, help="classes to list per image")
    parser.add_argument("--preparation", choices=PREPARATIONS, help=PREPARATION_HELP)
    add_device_arguments(parser, int8=True)
    add_threads_argument(parser)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


class _Files:
    """(prepared image, position, error) of each file: an unreadable file gives a blank
    image and its error, so one bad file neither stops the batch nor the others."""

    def __init__(self, paths: list[str], transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        import torch

        from convnet.data.preparation import DECODE_ERRORS

        path = self.paths[index]
        try:
            return self.transform(self.transform.decode(path)), index, ""
        except (*DECODE_ERRORS, UserError) as error:
            text = str(error).strip() or type(error).__name__
            text = text.removeprefix(f"{path}: ")  # the item names its file once
            return torch.zeros(self.transform.shape), index, text


def transform_for(loaded):
    """The preparation of `loaded`'s files, to [0, 1] (`file_transform`)."""
    from convnet.data.preparation import file_transform

    preprocessing = loaded.preprocessing
    return file_transform(
        loaded.input_size,
        loaded.photos,
        preprocessing.get("resize"),
        preprocessing.get("interpolation"),
    )


def run_predict(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from convnet.data.folders import default_workers
    from convnet.engine.device import resolve_device, resolve_precision
    from convnet.engine.evaluate import predict_logits

    if args.top < 1:
        raise UserError(f"--top must be at least 1, not {args.top}.")
    apply_threads(args)
    device = resolve_device(args.device)  # a device or precision not here: refused first
    precision = resolve_precision(args.precision, device, inference=True)
    check_counts(args, "calibration_images")
    check_calibration(args, precision)
    download_if_asked(args, args.target, args.weights)
    loaded = load_target(args)
    loaded.prepare_as(args.preparation)
    if precision == "int8":
        from convnet.engine.int8 import int8_without_data

        loaded.model = int8_without_data(loaded, args.calibration, args.calibration_images, log)
    model = loaded.model.to(device)
    files = _Files(list(args.images), transform_for(loaded))
    workers = default_workers() if len(files) >= WORKERS_FROM else 0
    batches = torch.utils.data.DataLoader(files, batch_size=BATCH_SIZE, num_workers=workers)
    results: list[dict] = []
    top_count = min(args.top, len(loaded.class_names))
    with tqdm(
        total=len(files), unit="image", disable=len(files) < PROGRESS_FROM, leave=False
    ) as progress:
        for images, positions, errors in batches:
            good = torch.tensor([not error for error in errors], dtype=torch.bool)
            top = None
            if good.any():
                logits = predict_logits(
                    model, images[good], loaded.normalization, device, precision
                )
                top = logits.softmax(dim=1).topk(top_count, dim=1)
            row = 0
            for position, error in zip(positions.tolist(), errors, strict=True):
                item: dict = {"image": args.images[position], "preparation": loaded.preparation}
                if error:
                    item["error"] = error
                else:
                    item["top"] = [
                        {
                            "index": int(index),
                            "name": loaded.class_names[int(index)],
                            "probability": round(float(probability), 6),
                        }
                        for probability, index in zip(
                            top.values[row], top.indices[row], strict=True
                        )
                    ]
                    row += 1
                results.append(item)
            progress.update(len(errors))
    failed = [item for item in results if "error" in item]
    if len(failed) == len(results):
        shown = "; ".join(f"{item['image']}: {item['error'].rstrip('.')}" for item in failed[:5])
        more = f"; and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise UserError(
            (f"None of the {len(failed)} images could be read: " if len(failed) > 1 else "")
            + shown
            + more
            + "."
        )
    log(loaded.preparation_note)
    if failed:
        log(f"{len(failed)} of {len(results)} images could not be read; their items say why.")
    if precision == "int8":
        agreed = loaded.model.note["top1_agreement"]
        log(
            f"int8 (ONNX Runtime): agreed with fp32 on {agreed:.1%} of {loaded.model.note['checked_on']}."
        )
    emit(args, results, "\n".join(_line(item) for item in results))
    return 0


def _line(item: dict) -> str:
    if "error" in item:
        return f"{item['image']}: cannot be read: {item['error']}"
    answers = ", ".join(f"{t['name']} {t['probability']:.1%}" for t in item["top"])
    return f"{item['image']}: {answers}"


COMMANDS: dict[str, Command] = {
    "predict": Command(
        "classify image files (PNG, JPEG, HEIC, …) as the model's training data was prepared",
        configure_predict,
        run_predict,
    ),
}
