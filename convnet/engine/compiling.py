"""Compiling a model (torch.compile): for inference, and when an evaluation pays for it; for
training, where `--compile yes` asks.

Imports nothing heavy, so the command line can name the choices in its help at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from convnet.errors import UserError

if TYPE_CHECKING:
    import torch

COMPILE_CHOICES = ("auto", "yes", "no")
# `convnet train --compile`: off unless asked, for want of a measurement on a GPU (where it
# should pay) and of one on the CPU (where the first step waits for the compiler).
TRAIN_COMPILE_CHOICES = ("yes", "no")
# `--compile auto` compiles on a CPU from this many images: there the time saved per image
# outweighs a first compile with an empty Inductor cache (benchmarks/folder_eval_breakdown.py:
# resnet18 bf16 on a quiet 2-core AMD EPYC, 10.4 ms per image eager against 8.8 compiled,
# 18 s of compiling, break-even 10,800 images; doubled for a machine where the compile takes
# longer; about 800 once the cache holds the kernels, which auto does not count on).
COMPILE_FROM_IMAGES = 20_000


def should_compile(choice: str, images: int, device: torch.device, on_disk: bool) -> bool:
    """`--compile yes|no`, or for "auto" whether `images` on `device` pay for compiling: image
    files on disk (`on_disk`) only, where the break-even was measured; a data set held in
    memory is scored in well under a second, less than any compile."""
    if choice not in COMPILE_CHOICES:
        raise UserError(f"--compile takes {', '.join(COMPILE_CHOICES)}, not {choice!r}.")
    if choice == "auto":
        return on_disk and device.type == "cpu" and images >= COMPILE_FROM_IMAGES
    return choice == "yes"


def compiled_for_inference(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`model` compiled for inference: weights frozen as constants (Inductor's freezing, so
    oneDNN gets them prepacked) and one static batch shape (the engine pads the last batch)."""
    import torch

    return torch.compile(model, dynamic=False, options={"freezing": True})


def compiled_for_training(model: torch.nn.Module) -> torch.nn.Module:
    """`model` (or its DistributedDataParallel wrapper) compiled for the training step: the
    forward pass and, from it, the backward pass, fused by Inductor (Triton kernels on a GPU).
    The weights stay the model's own, so checkpoints, the moving average and evaluation read
    them unchanged. The epoch's shorter last batch compiles once more."""
    import torch

    return torch.compile(model)
