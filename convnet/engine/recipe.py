"""The training recipe: the optimizer and its parameter groups, the learning-rate schedule,
the loss with mixup and cutmix, the exponential moving average of the weights, and the batch
a short run takes by default.

The default recipe is SGD with Nesterov momentum and weight decay on the weights only, not on
biases or normalization scales (Goyal et al. 2017, §5.1); a linear warm-up, then cosine
decay; cross-entropy with optional label smoothing. The options follow torchvision's
references/classification/train.py (`--opt`, `--lr-scheduler`, `--mixup-alpha`, …). The
schedule is a pure function of the optimizer step and every random draw of a step comes from
the generator the loop seeds with (seed, step, rank), so a checkpoint carries no scheduler
state and a resumed run continues bit for bit. Its numbers come from the configuration
(`convnet.engine.config`), where the defaults of each data source and model are read.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from convnet.data.sources import steps_per_epoch
from convnet.errors import UserError
from convnet.wording import counted

# --- the optimizer ------------------------------------------------------------------------


def freeze(model: nn.Module, patterns: list[str]) -> list[str]:
    """Stop training the parameters whose names match any of `patterns` (fnmatch, e.g.
    'features.*'); returns their names. A pattern that matches nothing is a UserError, so a
    typing mistake does not train what was meant to stay fixed; so are patterns that leave
    nothing to train."""
    names = [name for name, _ in model.named_parameters()]
    for pattern in patterns:
        if not fnmatch.filter(names, pattern):
            shown = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
            raise UserError(
                f"--freeze {pattern!r} matches no parameter of this model; its parameters are "
                f"named {shown}."
            )
    frozen = [name for name in names if any(fnmatch.fnmatch(name, p) for p in patterns)]
    if len(frozen) == len(names):
        given = " ".join(repr(pattern) for pattern in patterns)
        raise UserError(
            f"--freeze {given} matches every parameter of this model, so nothing would be "
            "trained. Freeze part of it (e.g. 'features.*'), or score the model as it is with "
            "convnet evaluate."
        )
    for name, parameter in model.named_parameters():
        if name in frozen:
            parameter.requires_grad_(False)
    return frozen


def parameter_groups(
    model: nn.Module,
    weight_decay: float,
    norm_weight_decay: float = 0.0,
    head: tuple[str, ...] = (),
    head_lr_scale: float = 1.0,
) -> list[dict]:
    """The optimizer's parameter groups: weight decay on weight matrices and kernels, and
    `norm_weight_decay` on biases and normalization scales (1-D parameters; 0 as Goyal et al.
    2017, §5.1, and torchvision's `--norm-weight-decay 0`). Where `head_lr_scale` is not 1,
    the parameters named in `head` (the classifier) form groups of their own whose learning
    rate is that multiple of the schedule's ("lr_scale"). Frozen parameters are left out."""
    separate = head_lr_scale != 1.0
    groups: dict[tuple[bool, bool], list] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            key = (separate and name in head, parameter.dim() <= 1)
            groups.setdefault(key, []).append(parameter)
    return [
        {
            "params": groups.get(key, []),
            "weight_decay": norm_weight_decay if key[1] else weight_decay,
            **({"lr_scale": head_lr_scale} if key[0] else {}),
        }
        # the model's two groups always (as PyTorch's examples and earlier runs have them),
        # the classifier's where it has a learning rate of its own
        for key in ((False, False), (False, True), (True, False), (True, True))
        if not key[0] or key in groups
    ]


def create_optimizer(
    model: nn.Module,
    opt: str,
    lr: float,
    momentum: float | None,
    weight_decay: float,
    norm_weight_decay: float = 0.0,
    head: tuple[str, ...] = (),
    head_lr_scale: float = 1.0,
) -> torch.optim.Optimizer:
    """`opt`: "sgd-nesterov" (SGD with Nesterov momentum whenever there is momentum;
    Sutskever et al. 2013), "sgd", "adamw" (Loshchilov & Hutter 2019; PyTorch's betas) or
    "rmsprop" (with torchvision's reference settings alpha 0.9, eps 0.0316)."""
    groups = parameter_groups(model, weight_decay, norm_weight_decay, head, head_lr_scale)
    if opt in ("sgd", "sgd-nesterov"):
        nesterov = opt == "sgd-nesterov" and momentum > 0
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, foreach=True)
    if opt == "adamw":
        return torch.optim.AdamW(groups, lr=lr, foreach=True)
    if opt == "rmsprop":
        return torch.optim.RMSprop(
            groups, lr=lr, momentum=momentum, alpha=0.9, eps=0.0316, foreach=True
        )
    raise UserError(f"Unknown optimizer '{opt}'.")


# --- the learning-rate schedule -------------------------------------------------------------

# OneCycle's start and end (Smith & Topin 2019), as torch.optim.lr_scheduler.OneCycleLR's
# defaults: it rises from peak / 25 and ends at peak / 25 / 10,000.
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4


@dataclass(frozen=True)
class Schedule:
    """The learning rate as a pure function of the optimizer step, so resuming needs no
    scheduler state. A linear warm-up from peak/20 to the peak over `warmup_steps`, then:

    - cosine: half a cosine from the peak down to `minimum` at the last step;
    - step: the peak × gamma every `step_size` epochs; multistep: × gamma at each milestone
      epoch (epochs counted from the start of training, the warm-up included);
    - onecycle: a cosine rise from peak/25 to the peak over the warm-up, then a cosine fall
      to peak/250,000, as OneCycleLR with pct_start = warm-up / all steps;
    - constant: the peak."""

    kind: str
    peak: float
    total_steps: int
    steps_per_epoch: int
    warmup_steps: int
    step_size: int = 30
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    minimum: float = 0.0

    @classmethod
    def of(cls, config, steps_per_epoch: int) -> Schedule:
        """The schedule of a resolved TrainConfig whose epochs take `steps_per_epoch` steps.
        The warm-up is --lr-warmup-epochs where given, else the share --warmup-fraction of
        all steps (at least one)."""
        total = steps_per_epoch * config.epochs
        if config.lr_warmup_epochs is not None:
            warmup = min(total, round(config.lr_warmup_epochs * steps_per_epoch))
        else:
            warmup = max(1, int(total * config.warmup_fraction))
        return cls(
            config.lr_scheduler,
            config.lr,
            total,
            steps_per_epoch,
            warmup,
            config.lr_step_size,
            tuple(config.lr_milestones),
            config.lr_gamma,
            config.lr_min,
        )

    def __call__(self, step: int) -> float:
        peak, warmup = self.peak, self.warmup_steps
        if self.kind == "onecycle":  # the peak at step warmup - 1, as OneCycleLR places it
            start = peak / ONECYCLE_DIV
            if step < warmup:
                return _cosine_between(start, peak, step / max(1, warmup - 1))
            progress = (step - warmup + 1) / max(1, self.total_steps - warmup)
            return _cosine_between(peak, start / ONECYCLE_FINAL_DIV, min(progress, 1.0))
        if step < warmup:
            return peak * (0.05 + 0.95 * step / warmup)
        epoch = step // self.steps_per_epoch
        if self.kind == "step":
            return peak * self.gamma ** (epoch // self.step_size)
        if self.kind == "multistep":
            return peak * self.gamma ** sum(epoch >= milestone for milestone in self.milestones)
        if self.kind == "constant":
            return peak
        progress = (step - warmup) / max(1, self.total_steps - warmup)
        return self.minimum + (peak - self.minimum) * 0.5 * (
            1 + math.cos(math.pi * min(progress, 1.0))
        )


def _cosine_between(start: float, end: float, progress: float) -> float:
    """From `start` (progress 0) to `end` (progress 1) along half a cosine."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, rate: float) -> None:
    """Every group at `rate`, times its own "lr_scale" where it has one (the classifier's)."""
    for group in optimizer.param_groups:
        group["lr"] = rate * group.get("lr_scale", 1.0)


# --- the loss, mixup and cutmix -------------------------------------------------------------


def batch_mixing(mixup_alpha: float, cutmix_alpha: float, num_classes: int):
    """torchvision's MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) on whole batches,
    one of the two at random for each batch where both are on (as its reference script);
    None when both are off. Their draws come from PyTorch's global generator, which the loop
    seeds for every step."""
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return None
    from torchvision.transforms import v2

    mixes = []
    if mixup_alpha > 0:
        mixes.append(v2.MixUp(alpha=mixup_alpha, num_classes=num_classes))
    if cutmix_alpha > 0:
        mixes.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
    return mixes[0] if len(mixes) == 1 else v2.RandomChoice(mixes)


def loss_sum(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """The summed cross-entropy of a batch, in fp32, against class indices (N,) or the class
    probabilities of mixed images (N, K). Undecodable images (label -1) add nothing; the
    caller divides by the batch size, not the valid count, which keeps every rank's share of
    the mean equal."""
    return F.cross_entropy(
        logits.float(),
        targets,
        ignore_index=-1 if targets.dim() == 1 else -100,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


# --- the moving average of the weights ------------------------------------------------------


def moving_average(model: nn.Module, decay: float) -> torch.optim.swa_utils.AveragedModel:
    """An exponential moving average of the model's weights and buffers (torch.optim.swa_utils;
    each update: average ← decay · average + (1 − decay) · weights), as torchvision's
    `--model-ema` keeps one; evaluated beside the model after every epoch."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


# --- the batch of a short run -------------------------------------------------------------

# A run that would take fewer optimizer steps than this at the default batch size gets a
# smaller batch (down to SHORT_RUN_MIN_BATCH), unless --batch-size was given. Measured on
# LeNet-5, 2,000 MNIST images, 1 epoch, seeds 0 and 1: at batch 128 (16 steps) the loss ends
# at 2.28, where it began (ln 10 = 2.30); at batch 32 (63 steps) at 0.80-1.03 with 23-31%
# test error; at batch 16 (125 steps) at 0.46-0.75 with 16% test error. PyTorch's default
# initialization keeps LeNet-5 at ln 10 for its first few dozen steps whatever the schedule.
SHORT_RUN_MIN_STEPS = 100
SHORT_RUN_MIN_BATCH = 16


def short_run_batch_size(
    batch_size: int, images: int, epochs: int, world_size: int = 1, accumulate: int = 1
) -> int:
    """The default batch halved until the run takes at least SHORT_RUN_MIN_STEPS optimizer
    steps (or the batch reaches SHORT_RUN_MIN_BATCH), so that a run on a few thousand images
    learns instead of ending where it began. `accumulate` batches make one step."""
    while (
        batch_size > SHORT_RUN_MIN_BATCH
        and steps_per_epoch(images, batch_size * accumulate, world_size) * epochs
        < SHORT_RUN_MIN_STEPS
    ):
        batch_size = max(SHORT_RUN_MIN_BATCH, batch_size // 2)
    return batch_size


def short_run_batch(
    batch_size: int, images: int, epochs: int, world_size: int = 1, accumulate: int = 1
) -> tuple[int, str | None]:
    """short_run_batch_size with the sentence that tells the user why the default batch
    changed (None when it did not)."""
    fitted = short_run_batch_size(batch_size, images, epochs, world_size, accumulate)
    if fitted == batch_size:
        return batch_size, None
    steps = epochs * steps_per_epoch(images, fitted * accumulate, world_size)
    return fitted, (
        f"Batch {fitted} instead of the default {batch_size}, so that {images:,} images × "
        f"{counted(epochs, 'epoch')} take {steps} steps and the model learns (--batch-size sets it)."
    )
