"""Evaluation: the one way a model is scored, for per-epoch validation and `convnet evaluate`.

Every data source goes through `evaluate`, with the same numerics: the shared inference path
(batch norms folded into their convolutions, bf16 autocast with channels-last where the
precision is bf16, fp32 otherwise). Under torchrun each rank scores its share of the
held-out images (r, r + W, …, no padding) and the sums are added, so the scores are exact.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from convnet.data.sources import DataSource
from convnet.data.transforms import DeviceNormalize
from convnet.engine import distributed
from convnet.engine.compiling import compiled_for_inference
from convnet.engine.device import fast_inference, is_out_of_memory
from convnet.engine.metrics import (
    confusion_matrix,
    easiest_and_hardest,
    most_confused,
    per_class_accuracy,
    topk_accuracy,
)
from convnet.errors import UserError
from convnet.wording import counted


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    images: torch.Tensor,
    normalization: tuple[float, float],
    device: torch.device,
    precision: str = "fp32",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Logits (fp32, on the CPU) for float images in [0, 1], in batches, through the shared
    fast-inference path (bf16 autocast + channels-last, or fp32), normalised on `device`."""
    to_input = DeviceNormalize(*normalization)
    was_training = model.training
    model.eval()
    outputs = []
    if batch_size is None:  # 1000 MNIST digits at a time, a few dozen 224×224 photos
        batch_size = max(1, min(1000, 4_000_000 // max(1, images[0].numel() if len(images) else 1)))
    try:
        with fast_inference(model, device, precision) as prepare:
            for start in range(0, len(images), batch_size):
                batch = to_input(images[start : start + batch_size], device)
                outputs.append(model(prepare(batch)).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs) if outputs else torch.empty(0)


def score(
    logits: torch.Tensor, labels: torch.Tensor, class_names: tuple[str, ...], extremes: int = 3
) -> dict:
    """The evaluation keys of the JSON contract (docs/json.md): top-1/top-5 error,
    per-class accuracy, the easiest and hardest classes (only those that stand apart, see
    `easiest_and_hardest`), the most frequent confusions."""
    confusion = confusion_matrix(logits.argmax(dim=1), labels, logits.shape[1])
    top5_correct = round(topk_accuracy(logits, labels, 5) * len(labels))
    return score_confusion(confusion, top5_correct, class_names, extremes)


def score_confusion(
    confusion: torch.Tensor, top5_correct: int, class_names: tuple[str, ...], extremes: int = 3
) -> dict:
    """`score` from sums alone — the confusion matrix and the top-5 hit count — which
    processes can add up (distributed validation) without gathering their logits."""
    num_classes = confusion.shape[0]
    total = int(confusion.sum())
    accuracy = per_class_accuracy(confusion)
    counts = confusion.sum(dim=1)
    per_class = [
        {
            "index": index,
            "name": class_names[index] if index < len(class_names) else str(index),
            "accuracy": None if torch.isnan(accuracy[index]) else round(accuracy[index].item(), 6),
            "count": int(counts[index]),
        }
        for index in range(num_classes)
    ]
    easiest, hardest = easiest_and_hardest(accuracy, counts, extremes)
    return {
        "num_examples": total,
        "top1_error": round(1 - int(confusion.diagonal().sum()) / max(total, 1), 6),
        "top5_error": round(1 - top5_correct / max(total, 1), 6),
        "per_class": per_class,
        "easiest": [per_class[i] for i in easiest],
        "hardest": [per_class[i] for i in hardest],
        "confusions": [
            {"true": per_class[t]["name"], "predicted": per_class[p]["name"], "count": n}
            for t, p, n in most_confused(confusion)
        ],
        "confusion_matrix": confusion.tolist(),
    }


LISTED = 10  # skipped files named in a message


@dataclass
class Evaluation:
    """The JSON-ready `result`, and for reports the logits (N, K) of the scored images,
    their labels and their positions among the source's held-out images."""

    result: dict
    logits: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    source: DataSource
    compiled: bool = False  # whether the batches ran through the compiled model


class _Forward:
    """Logits (fp32, on the CPU) of a source's batches, made the model's input on its device
    by the source's `device_normalize` and put in its layout (`prepare`): through the
    compiled model while it works, else the model itself; a batch too large for memory is
    halved until it fits."""

    def __init__(
        self,
        model: nn.Module,
        prepare: Callable,
        device: torch.device,
        to_input: DeviceNormalize,
        batch_size: int,
        compile_model: bool,
        log: Callable[[str], None],
    ) -> None:
        self.model, self.prepare, self.device, self.batch_size = model, prepare, device, batch_size
        self.to_input, self.log, self.halved = to_input, log, []
        self.compiled = [compiled_for_inference(model)] if compile_model else []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.compiled and not self.halved:
            return self._compiled(images)
        try:
            return self.model(self.prepare(self.to_input(images, self.device))).float().cpu()
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            if len(images) == 1:
                raise UserError(
                    f"Evaluation ran out of memory even one image at a time on {self.device} "
                    f"({str(error).strip().splitlines()[0]}); close other programs, or use "
                    "another --device."
                ) from None
            half = len(images) // 2
            self.halved.append(half)
            return torch.cat([self(images[:half]), self(images[half:])])

    def _compiled(self, images: torch.Tensor) -> torch.Tensor:
        """The last (short) batch is padded with zeros to the full batch, so that it needs no
        second compile; a compile that fails leaves the model itself to go on."""
        count = len(images)
        if count < self.batch_size:
            padding = images.new_zeros(self.batch_size - count, *images.shape[1:])
            images = torch.cat([images, padding])
        try:
            batch = self.prepare(self.to_input(images, self.device))
            return self.compiled[0](batch).float().cpu()[:count]
        except Exception as error:  # whatever the compiler raises: go on uncompiled
            self.compiled.clear()
            if not is_out_of_memory(error):  # out of memory: __call__ halves the batch
                first = str(error).strip().splitlines()[0] if str(error).strip() else ""
                self.log(
                    f"Note: compiling the model failed ({type(error).__name__}: {first}); the "
                    "evaluation goes on without compiling (--compile no skips the attempt)."
                )
            return self(images[:count])


class _Sums:
    """What the scored batches add up to: the confusion matrix, top-5 hits, the summed loss,
    undecodable images, and (when kept) the logits, labels and positions."""

    def __init__(self, count: int, keep_logits: bool) -> None:
        self.confusion = torch.zeros(count, count, dtype=torch.long)
        self.top5_correct, self.loss_sum, self.failed = 0, 0.0, []
        self.kept: list[list[torch.Tensor]] | None = [[], [], []] if keep_logits else None

    def add(self, output: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        count = self.confusion.shape[0]
        self.loss_sum += F.cross_entropy(output, labels, reduction="sum").item()
        top = output.topk(min(5, count), dim=1).indices
        self.top5_correct += int((top == labels[:, None]).any(dim=1).sum())
        self.confusion += confusion_matrix(output.argmax(1), labels, count)
        if self.kept is not None:
            for kept, tensor in zip(self.kept, (output, labels, indices), strict=True):
                kept.append(tensor)

    def sum_over_ranks(self) -> None:
        """Under torchrun: every rank's sums added up, so the scores are exact."""
        if not distributed.current().distributed:
            return
        count = self.confusion.shape[0]
        summed = distributed.all_reduce_sum(
            torch.cat(
                [
                    self.confusion.flatten().double(),
                    torch.tensor([self.top5_correct, self.loss_sum]),
                ]
            )
        )
        self.confusion = summed[: count * count].reshape(count, count).round().long()
        self.top5_correct, self.loss_sum = round(summed[-2].item()), summed[-1].item()
        self.failed = sum(distributed.gather_objects(self.failed), [])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        count = self.confusion.shape[0]
        logits, labels, indices = self.kept or ([], [], [])
        return (
            torch.cat(logits) if logits else torch.empty(0, count),
            torch.cat(labels) if labels else torch.empty(0, dtype=torch.long),
            torch.cat(indices) if indices else torch.empty(0, dtype=torch.long),
        )


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    source: DataSource,
    device: torch.device,
    precision: str = "fp32",
    *,
    batch_size: int | None = None,
    extremes: int = 3,
    strict: bool = False,
    keep_logits: bool = True,
    progress: bool = False,
    compile_model: bool = False,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> Evaluation:
    """Top-1/top-5 error, mean loss, per-class accuracy, easiest/hardest classes, confusions
    and speed of `model` on `source`'s held-out images. Images that cannot be decoded are
    left out and listed under "skipped"; with `strict` they are a UserError, as is a model
    whose output does not have one score per class. `compile_model` runs the batches through
    `compiled_for_inference` (falling back to the model itself, with a note, where compiling
    fails); `Evaluation.compiled` says whether it did."""
    session = distributed.current()
    count = len(source.class_names)
    batch_size = batch_size or source.eval_batch_size
    sums = _Sums(count, keep_logits)
    was_training = model.training
    model.eval()
    bar = tqdm(
        total=-(-source.eval_count // session.world_size),
        unit="img",
        file=sys.stderr,
        disable=not (progress and session.is_main),
        desc=f"evaluating {source.eval_split}",
        leave=False,
        mininterval=0.5,
    )
    started = time.perf_counter()
    try:
        with fast_inference(model, device, precision) as prepare:
            to_input = source.device_normalize
            forward = _Forward(model, prepare, device, to_input, batch_size, compile_model, log)
            for images, labels, indices in source.eval_batches(
                batch_size, session.rank, session.world_size
            ):
                bar.update(len(labels))
                good = labels >= 0
                if not good.all():
                    sums.failed.extend(indices[~good].tolist())
                    images, labels, indices = images[good], labels[good], indices[good]
                if not len(labels):
                    continue
                output = forward(images)
                if output.shape[1] != count:
                    raise UserError(
                        f"The model outputs {output.shape[1]} scores per image but "
                        f"{source.name} has {count} classes; evaluate it on the classes it "
                        "was trained for."
                    )
                sums.add(output, labels, indices)
    finally:
        bar.close()
        model.train(was_training)
    seconds = time.perf_counter() - started
    if forward.halved:
        smallest = min(forward.halved)
        log(
            f"Note: a batch of {batch_size} images did not fit in memory; the evaluation went "
            f"on in batches of {smallest} (--batch-size {smallest} avoids the retries)."
        )
    # why each image failed, asked where it was read (another machine may not see the file)
    sums.failed = [(index, *source.failure(index)) for index in sums.failed]
    sums.sum_over_ranks()
    skipped = [*source.skipped, *((path, why) for _, path, why in sorted(sums.failed))]
    if strict and skipped:
        raise UserError(
            f"--strict: {counted(len(skipped), 'file')} in {source.name} cannot be used: "
            + ", ".join(f"{path} ({why})" for path, why in skipped[:LISTED])
            + (f" and {len(skipped) - LISTED} more" if len(skipped) > LISTED else "")
            + ". Remove or replace them, or run without --strict to skip them."
        )
    if int(sums.confusion.sum()) == 0:
        raise UserError(
            f"None of the {source.eval_count:,} held-out images of {source.name} "
            "could be scored (none could be decoded)."
        )
    result = score_confusion(sums.confusion, sums.top5_correct, source.class_names, extremes)
    result["loss"] = round(sums.loss_sum / max(result["num_examples"], 1), 6)
    result["split"] = source.eval_split
    result["eval_seconds"] = round(seconds, 4)
    result["eval_images_per_second"] = round(result["num_examples"] / max(seconds, 1e-9), 1)
    result["num_skipped"] = len(skipped)
    result["skipped"] = [{"file": str(path), "reason": why} for path, why in skipped]
    # image folders: the files not taken as images, and why; sentences about the data
    left_out = getattr(source, "left_out", [])
    result["num_left_out"] = len(left_out)
    result["left_out"] = [{"file": str(path), "reason": why} for path, why in left_out]
    result["warnings"] = list(getattr(source, "warnings", []))
    return Evaluation(result, *sums.tensors(), source, bool(forward.compiled))
