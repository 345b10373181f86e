"""The one configuration of a training run, and the defaults that differ by data source.

A run trains on one of two kinds of data source:

- "tensors": a registered data set held in memory (MNIST, Fashion-MNIST, CIFAR-10), `--dataset NAME`;
- "images": image files on disk (class folders, ILSVRC2012), `--data DIR`.

Everything else — the loop, the evaluation, the run directory — is the same for both. What
genuinely differs is stated once, in `SOURCE_DEFAULTS`; a model's own registry entry
(`train_defaults`) overrides it, and a flag overrides both.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from torch import nn

from convnet.engine.tensorboard import check_available
from convnet.errors import UserError
from convnet.models import ModelSpec, get_model_spec

# Defaults by kind of data source, where a model's registry entry sets none.
SOURCE_DEFAULTS: dict[str, dict] = {
    # Data sets held in memory: the data set's own batched augmentation when on (digits:
    # shift, rotate, scale; CIFAR-10: crop and flip), no label smoothing, and a longer
    # warm-up, which the short MNIST runs tolerate best.
    "tensors": dict(
        epochs=10,
        batch_size=128,
        lr=0.05,
        weight_decay=0.0,
        augment=False,
        label_smoothing=0.0,
        warmup_fraction=0.15,
    ),
    # Photos: the ImageNet recipe (Goyal et al. 2017; torchvision's reference scripts):
    # random resized crops and flips, label smoothing 0.1 (Szegedy et al. 2016, §7), and a
    # warm-up of 5 of 90 epochs' share.
    "images": dict(
        epochs=10,
        batch_size=64,
        lr=0.01,
        weight_decay=5e-4,
        augment=True,
        label_smoothing=0.1,
        warmup_fraction=0.05,
    ),
}


@dataclass
class TrainConfig:
    """Everything a run depends on. None means "the default": the model's registry entry,
    then the data source's row of `SOURCE_DEFAULTS`. `resolved()` fills and checks them."""

    model: str = "lenet5"
    dataset: str | None = None  # a registered data set (in memory) ...
    data: str | None = None  # ... or an image folder / ILSVRC2012 on disk
    data_dir: str | None = None  # where registered data sets are cached
    epochs: int | None = None
    batch_size: int | None = None  # per process; the global batch is batch_size × world_size
    lr: float | None = None  # peak learning rate, for the global batch
    weight_decay: float | None = None  # on weights only, not biases or normalization scales
    momentum: float = 0.9
    warmup_fraction: float | None = None  # share of the steps spent ramping the rate up
    augment: bool | None = None
    label_smoothing: float | None = None
    image_size: int | None = None  # images: side of the crop the model sees
    val_fraction: float = 0.2  # images: held-out share of a folder without train/ and val/
    strict: bool = False  # images: fail on undecodable files instead of skipping them
    workers: int | None = None  # images: decoding processes per training process
    weights: str | None = None  # initial weights: a file, or torchvision weights by name
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"  # under torchrun: gloo on CPUs, nccl on GPUs
    out: str | None = None
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at the end of each epoch)
    tensorboard: bool = False  # also write TensorBoard event files (RUN/tensorboard)
    train_subset: int | None = None  # train on N images only (quick looks, tests)
    test_subset: int | None = None  # evaluate on the first N held-out images only
    world_size: int = 1
    classes: list = field(default_factory=list)  # the class names, in output order
    model_config: dict = field(default_factory=dict)
    # A user's own nn.Module trained through the Python API (convnet.fit), named `model`:
    # {"class": "package.Module", "input_size": [C, H, W], "normalization": [mean, std]}.
    # Its code is not in the run, so loading the run needs the module again.
    custom_module: dict | None = None

    @property
    def spec(self) -> ModelSpec:
        """The registry's entry of the model, or a stand-in describing a custom module."""
        if self.custom_module is None:
            return get_model_spec(self.model)
        custom = self.custom_module
        return ModelSpec(
            name=self.model,
            builder=_not_rebuildable,
            family="custom",
            description=f"{custom.get('class', self.model)}, a module of your own (Python API)",
            input_size=tuple(custom["input_size"]),
            normalization=tuple(custom.get("normalization", (0.0, 1.0))),
        )

    @property
    def source_kind(self) -> str:
        """ "images" for --data DIR, else "tensors"."""
        return "images" if self.data else "tensors"

    @property
    def source_name(self) -> str:
        """A short name for the data: the data set's, or "folder"."""
        return "folder" if self.data else (self.dataset or "mnist")

    def resolved(self, world_size: int = 1) -> TrainConfig:
        """A copy with every default filled in and every value checked (UserError)."""
        if self.dataset and self.data:
            raise UserError("Give either --dataset NAME or --data DIR, not both.")
        spec = self.spec
        values = asdict(self)
        values["dataset"] = None if self.data else (self.dataset or "mnist")
        for key, default in SOURCE_DEFAULTS[self.source_kind].items():
            # A registry entry's `augment` is about digits held in memory; photos always
            # take the crop-and-flip augmentation unless --no-augment says otherwise.
            own = spec.train_defaults if key != "augment" or not self.data else {}
            if values[key] is None:
                values[key] = own.get(key, default)
        if self.data:
            if values["image_size"] is None:
                values["image_size"] = spec.input_size[1]
            # absolute, so the run finds its images from any working directory
            values["data"] = str(Path(values["data"]).expanduser().resolve())
            values["workers"] = 2 if values["workers"] is None else values["workers"]
        values["world_size"] = world_size
        config = TrainConfig(**values)
        config.check()
        return config

    def check(self) -> None:
        """Refuse values no run can use, naming the flag."""
        checks = (
            (self.epochs >= 1, f"--epochs must be at least 1, not {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be at least 1, not {self.batch_size}"),
            (
                self.lr > 0 and math.isfinite(self.lr),
                f"--lr must be a positive number, not {self.lr}",
            ),
            (
                self.weight_decay >= 0 and math.isfinite(self.weight_decay),
                f"--weight-decay must be 0 or more, not {self.weight_decay}",
            ),
            (0 <= self.momentum < 1, f"--momentum must be in [0, 1), not {self.momentum}"),
            (
                0 <= self.warmup_fraction < 1,
                f"--warmup-fraction must be in [0, 1), not {self.warmup_fraction}",
            ),
            (
                0 <= self.label_smoothing < 1,
                f"--label-smoothing must be in [0, 1), not {self.label_smoothing}",
            ),
            (
                0 < self.val_fraction < 1,
                f"--val-fraction must lie between 0 and 1, not {self.val_fraction}",
            ),
            (
                self.checkpoint_every >= 0,
                f"--checkpoint-every must be 0 or more, not {self.checkpoint_every}",
            ),
            (0 <= self.seed < 2**63, f"--seed must be between 0 and 2**63 - 1, not {self.seed}"),
            (
                self.train_subset is None or self.train_subset >= 1,
                f"--train-subset must be at least 1, not {self.train_subset}",
            ),
            (
                self.test_subset is None or self.test_subset >= 1,
                f"--test-subset must be at least 1, not {self.test_subset}",
            ),
            (
                self.workers is None or self.workers >= 0,
                f"--workers must be 0 or more, not {self.workers}",
            ),
            (
                self.image_size is None or self.image_size >= 8,
                f"--image-size must be at least 8, not {self.image_size}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise UserError(message + ".")
        if self.tensorboard:
            check_available()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """The configuration a run saved; ValueError names what is wrong with a damaged one.

        Older run directories wrote `dataset: "folder"` and `data_dir` for image folders;
        they are read as `data`."""
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("it holds no JSON object")
        if document.get("dataset") == "folder":
            document["data"] = document.pop("data_dir", None)
            document["dataset"] = None
        allowed = {
            "int": (int,),
            "float": (int, float),
            "str": (str,),
            "bool": (bool,),
            "dict": (dict,),
            "list": (list,),
            "None": (type(None),),
        }
        values = {}
        for item in fields(cls):
            if item.name not in document:
                continue
            value = document[item.name]
            names = [kind.strip() for kind in str(item.type).split("|")]
            kinds = sum((allowed.get(name, (object,)) for name in names), ())  # unknown: any
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f'"{item.name}" is {json.dumps(value)}, not of type {item.type}')
            values[item.name] = value
        if "model" in values and not isinstance(values["model"], str):
            raise ValueError('"model" is not a string')
        return cls(**values)


def _not_rebuildable(**options) -> nn.Module:
    raise UserError(
        "A module of your own is not in convnet's model registry; its code is yours, so build "
        "it yourself and pass it (convnet.fit(module, ...), convnet.load_run(path, module=...))."
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
    from convnet.data.sources import steps_per_epoch  # the data layer, below the engine

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
    from convnet.data.sources import steps_per_epoch

    fitted = short_run_batch_size(batch_size, images, epochs, world_size)
    if fitted == batch_size:
        return batch_size, None
    steps = epochs * steps_per_epoch(images, fitted, world_size)
    return fitted, (
        f"Batch {fitted} instead of the default {batch_size}, so that {images:,} images × "
        f"{epochs} epoch(s) take {steps} steps and the model learns (--batch-size sets it)."
    )


def learning_rate(step: int, total_steps: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up from peak/20 to peak, then cosine decay to zero: a pure function of
    the step, so resuming needs no scheduler state."""
    warmup = max(1, int(total_steps * warmup_fraction))
    if step < warmup:
        return peak * (0.05 + 0.95 * step / warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
