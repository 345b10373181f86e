"""Evaluation over an image collection on disk (image folders, ILSVRC2012): decode in
DataLoader workers, run the model in batches, score with the same `score` as MNIST runs.

A 50,000-image validation set does not fit in memory as tensors, so unlike
`convnet.engine.evaluate.evaluate` this streams batches and keeps only the logits.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from convnet.data.folders import (
    FolderDataset,
    ImageCollection,
    decode_failure,
    default_workers,
)
from convnet.engine.device import fast_inference
from convnet.engine.evaluate import score
from convnet.errors import UserError

LISTED = 10


@dataclass
class FolderEvaluation:
    """The JSON-ready result plus what reports need: logits of the decoded images, their
    labels and their positions in `collection.samples`."""

    result: dict
    logits: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    collection: ImageCollection


def _loader(dataset: FolderDataset, batch_size: int, workers: int, device: torch.device):
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
        pin_memory=device.type == "cuda", persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )  # fmt: skip


@torch.inference_mode()
def evaluate_collection(
    model: nn.Module,
    collection: ImageCollection,
    transform: Callable,
    device: torch.device,
    precision: str = "fp32",
    batch_size: int = 64,
    workers: int | None = None,
    *,
    class_names: tuple[str, ...] | None = None,
    extremes: int = 5,
    strict: bool = False,
    progress: bool = True,
) -> FolderEvaluation:
    """Top-1/top-5 error, per-class accuracy, easiest/hardest classes, confusions and
    images/s of `model` on `collection`. Files that cannot be decoded are left out and listed
    under "skipped" with those the scan left out; with `strict` they are a UserError."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {batch_size}.")
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise UserError(f"--workers must be 0 or more, not {workers}.")
    num_classes = len(collection.classes)
    class_names = class_names or collection.classes
    dataset = FolderDataset(collection, transform)
    was_training = model.training
    model.eval()
    logits, labels, indices, failed = [], [], [], []
    start = time.perf_counter()
    bar = tqdm(total=len(dataset), unit="img", file=sys.stderr, disable=not progress,
               desc=f"evaluating {collection.split}", dynamic_ncols=True)  # fmt: skip
    try:
        with fast_inference(model, device, precision) as prepare:
            for images, batch_labels, batch_indices in _loader(
                dataset, batch_size, workers, device
            ):
                good = batch_labels >= 0
                failed.extend(batch_indices[~good].tolist())
                if good.any():
                    batch = prepare(images[good].to(device, non_blocking=True))
                    output = model(batch).float().cpu()
                    if output.shape[1] != num_classes:
                        raise UserError(
                            f"The model outputs {output.shape[1]} classes but {collection.root} "
                            f"has {num_classes}; evaluate it on the classes it was trained for."
                        )
                    logits.append(output)
                    labels.append(batch_labels[good])
                    indices.append(batch_indices[good])
                bar.update(len(batch_labels))
    finally:
        bar.close()
        model.train(was_training)
    seconds = time.perf_counter() - start
    undecodable = [
        (collection.samples[i][0], decode_failure(collection.samples[i][0]) or "cannot be decoded")
        for i in failed
    ]
    skipped = [*collection.skipped, *undecodable]
    if strict and skipped:
        raise UserError(
            f"--strict: {len(skipped)} file(s) in {collection.root} cannot be used: "
            + ", ".join(f"{path} ({why})" for path, why in skipped[:LISTED])
            + (f" and {len(skipped) - LISTED} more" if len(skipped) > LISTED else "")
            + ". Remove or replace them, or run without --strict to skip them."
        )
    if not logits:
        raise UserError(
            f"None of the {len(dataset):,} images in {collection.root} could be decoded."
        )
    all_logits, all_labels = torch.cat(logits), torch.cat(labels)
    result = {
        "dataset": str(collection.root),
        "layout": collection.layout,
        "split": collection.split,
        **score(all_logits, all_labels, tuple(class_names), extremes),
    }
    for entry in result["per_class"]:  # easiest/hardest hold the same dictionaries
        entry["folder"] = collection.classes[entry["index"]]
    if collection.ground_truth is not None:
        result["ground_truth"] = str(collection.ground_truth)
    result["eval_seconds"] = round(seconds, 3)
    result["images_per_second"] = round(len(all_labels) / max(seconds, 1e-9), 1)
    result["num_skipped"] = len(skipped)
    result["skipped"] = [{"file": str(path), "reason": why} for path, why in skipped]
    return FolderEvaluation(result, all_logits, all_labels, torch.cat(indices), collection)
