"""The training recipe: the optimizer and its parameter groups, the learning-rate schedule,
the loss, and the batch a short run takes by default.

The recipe is SGD with Nesterov momentum and weight decay on the weights only, not on biases
or normalization scales (Goyal et al. 2017, §5.1); a linear warm-up, then cosine decay, as a
pure function of the step, so a checkpoint carries no scheduler state; cross-entropy with
optional label smoothing. Its numbers (peak rate, decay, warm-up share) come from the
configuration (`convnet.engine.config`), where the defaults of each data source and model
are read.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from convnet.data.sources import steps_per_epoch


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only, not on biases or normalization
    scales (Goyal et al. 2017, §5.1; torchvision's `--norm-weight-decay 0`)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def create_optimizer(
    model: nn.Module, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD, with Nesterov momentum whenever there is momentum (Sutskever et al. 2013)."""
    return torch.optim.SGD(
        parameter_groups(model, weight_decay),
        lr=lr,
        momentum=momentum,
        nesterov=momentum > 0,
        foreach=True,
    )


def learning_rate(step: int, total_steps: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up from peak/20 to peak, then cosine decay to zero: a pure function of
    the step, so resuming needs no scheduler state."""
    warmup = max(1, int(total_steps * warmup_fraction))
    if step < warmup:
        return peak * (0.05 + 0.95 * step / warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = rate


def loss_sum(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """The summed cross-entropy of a batch, in fp32. Undecodable images (label -1) add
    nothing; the caller divides by the batch size, not the valid count, which keeps every
    rank's share of the mean equal."""
    return F.cross_entropy(
        logits.float(),
        labels,
        ignore_index=-1,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


# A run that would take fewer optimizer steps than this at the default batch size gets a
# smaller batch (down to SHORT_RUN_MIN_BATCH), unless --batch-size was given. Measured on
# LeNet-5, 2,000 MNIST images, 1 epoch, seeds 0 and 1: at batch 128 (16 steps) the loss ends
# at 2.28, where it began (ln 10 = 2.30); at batch 32 (63 steps) at 0.80-1.03 with 23-31%
# test error; at batch 16 (125 steps) at 0.46-0.75 with 16% test error. PyTorch's default
# initialization keeps LeNet-5 at ln 10 for its first few dozen steps whatever the schedule.
SHORT_RUN_MIN_STEPS = 100
SHORT_RUN_MIN_BATCH = 16


def short_run_batch_size(batch_size: int, images: int, epochs: int, world_size: int = 1) -> int:
    """The default batch halved until the run takes at least SHORT_RUN_MIN_STEPS steps
    (or the batch reaches SHORT_RUN_MIN_BATCH), so that a run on a few thousand images
    learns instead of ending where it began."""
    while (
        batch_size > SHORT_RUN_MIN_BATCH
        and steps_per_epoch(images, batch_size, world_size) * epochs < SHORT_RUN_MIN_STEPS
    ):
        batch_size = max(SHORT_RUN_MIN_BATCH, batch_size // 2)
    return batch_size


def short_run_batch(
    batch_size: int, images: int, epochs: int, world_size: int = 1
) -> tuple[int, str | None]:
    """short_run_batch_size with the sentence that tells the user why the default batch
    changed (None when it did not)."""
    fitted = short_run_batch_size(batch_size, images, epochs, world_size)
    if fitted == batch_size:
        return batch_size, None
    steps = epochs * steps_per_epoch(images, fitted, world_size)
    return fitted, (
        f"Batch {fitted} instead of the default {batch_size}, so that {images:,} images × "
        f"{epochs} epoch(s) take {steps} steps and the model learns (--batch-size sets it)."
    )
