"""The one configuration of a training run, and the defaults that differ by data source and
by model.

A run trains on one of two kinds of data source:

- "tensors": a registered data set held in memory (MNIST, Fashion-MNIST, CIFAR-10), `--dataset NAME`;
- "images": image files on disk (class folders, ILSVRC2012, or their tar shards), `--data DIR`.

Everything else — the loop, the evaluation, the run directory — is the same for both. What
genuinely differs is stated once, in `SOURCE_DEFAULTS`; a model's own registry entry
(`train_defaults`) overrides it, and a flag overrides both. `TrainConfig.defaults` is the one
place that reads these tables; the only default decided later is the batch of a short run
(`convnet.engine.recipe.short_run_batch`), which needs the number of training images.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn

from convnet.data.datasets import get_dataset_spec
from convnet.data.shard_manifest import is_shard_data
from convnet.engine.compiling import TRAIN_COMPILE_CHOICES
from convnet.engine.tensorboard import check_available
from convnet.errors import UserError
from convnet.models import ModelSpec, get_model_spec
from convnet.models.imagenet import IMAGENET_NORMALIZATION
from convnet.wording import counted

# Defaults by kind of data source, where a model's registry entry sets none.
SOURCE_DEFAULTS: dict[str, dict] = {
    # Data sets held in memory: the data set's own batched augmentation when on (digits:
    # shift, rotate, scale; CIFAR-10: crop and flip), no label smoothing, and a longer
    # warm-up, which the short MNIST runs tolerate best.
    "tensors": dict(
        opt="sgd-nesterov",
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
        opt="sgd-nesterov",
        epochs=10,
        batch_size=64,
        lr=0.01,
        weight_decay=5e-4,
        augment=True,
        label_smoothing=0.1,
        warmup_fraction=0.05,
    ),
}

OPTIMIZERS = ("sgd", "sgd-nesterov", "adamw", "rmsprop")
LR_SCHEDULERS = ("cosine", "step", "multistep", "onecycle", "constant")
# RandAugment, TrivialAugment (wide), AugMix and AutoAugment's ImageNet policy, named as
# torchvision's references/classification/train.py names them
AUTO_AUGMENT = ("ra", "ta_wide", "augmix", "imagenet")

# The values a run can use, by field: (holds, what the flag must be). None is "the default"
# and always allowed; `TrainConfig.validate` names the flag of a value outside its range.
RANGES = {
    "epochs": (lambda v: v >= 1, "must be at least 1"),
    "batch_size": (lambda v: v >= 1, "must be at least 1"),
    "lr": (lambda v: v > 0 and math.isfinite(v), "must be a positive number"),
    "weight_decay": (lambda v: v >= 0 and math.isfinite(v), "must be 0 or more"),
    "momentum": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "warmup_fraction": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "label_smoothing": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "val_fraction": (lambda v: 0 < v < 1, "must lie between 0 and 1"),
    "checkpoint_every": (lambda v: v >= 0, "must be 0 or more"),
    "seed": (lambda v: 0 <= v < 2**63, "must be between 0 and 2**63 - 1"),
    "train_subset": (lambda v: v >= 1, "must be at least 1"),
    "test_subset": (lambda v: v >= 1, "must be at least 1"),
    "workers": (lambda v: v >= 0, "must be 0 or more"),
    "compile": (lambda v: v in TRAIN_COMPILE_CHOICES, "must be yes or no"),
    "shard_streams": (lambda v: v >= 1, "must be at least 1"),
    "image_size": (lambda v: v >= 8, "must be at least 8"),
    "opt": (lambda v: v in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
    "norm_weight_decay": (lambda v: v >= 0 and math.isfinite(v), "must be 0 or more"),
    "lr_scheduler": (lambda v: v in LR_SCHEDULERS, f"must be one of {', '.join(LR_SCHEDULERS)}"),
    "lr_warmup_epochs": (lambda v: v >= 0 and math.isfinite(v), "must be 0 or more"),
    "lr_step_size": (lambda v: v >= 1, "must be at least 1"),
    "lr_milestones": (
        lambda v: all(isinstance(m, int) and m >= 1 for m in v) and list(v) == sorted(set(v)),
        "must be increasing whole epochs, at least 1",
    ),
    "lr_gamma": (lambda v: 0 < v <= 1, "must be in (0, 1]"),
    "lr_min": (lambda v: v >= 0 and math.isfinite(v), "must be 0 or more"),
    "head_lr_scale": (lambda v: v >= 0 and math.isfinite(v), "must be 0 or more"),
    "mixup_alpha": (lambda v: v >= 0 and math.isfinite(v), "must be 0 (off) or more"),
    "cutmix_alpha": (lambda v: v >= 0 and math.isfinite(v), "must be 0 (off) or more"),
    "auto_augment": (lambda v: v in AUTO_AUGMENT, f"must be one of {', '.join(AUTO_AUGMENT)}"),
    "random_erase": (lambda v: 0 <= v <= 1, "must be a probability in [0, 1]"),
    "model_ema_decay": (lambda v: 0 < v < 1, "must be in (0, 1)"),
    "model_ema_steps": (lambda v: v >= 1, "must be at least 1"),
    "clip_grad_norm": (lambda v: v > 0 and math.isfinite(v), "must be a positive number"),
    "grad_accum_steps": (lambda v: v >= 1, "must be at least 1"),
    "patience": (lambda v: v >= 1, "must be at least 1"),
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
    momentum: float | None = None  # SGD's and RMSprop's (default 0.9); AdamW has none
    warmup_fraction: float | None = None  # share of the steps spent ramping the rate up
    augment: bool | None = None
    label_smoothing: float | None = None
    # The recipe beyond the defaults above, each named as its flag (torchvision's reference
    # script's names where it has one); docs/command-line.md compares them with timm's.
    opt: str | None = None  # sgd | sgd-nesterov | adamw | rmsprop
    norm_weight_decay: float = 0.0  # weight decay of biases and normalization scales (1-D)
    lr_scheduler: str = (
        "cosine"  # after the warm-up: cosine | step | multistep | onecycle | constant
    )
    lr_warmup_epochs: float | None = None  # the warm-up in epochs, instead of warmup_fraction
    lr_step_size: int = 30  # step: epochs between decays
    lr_milestones: list = field(default_factory=list)  # multistep: the epochs that decay
    lr_gamma: float = 0.1  # step, multistep: the factor of each decay
    lr_min: float = 0.0  # cosine: the rate it ends at
    head_lr_scale: float = 1.0  # the classifier's learning rate, as a multiple of --lr
    mixup_alpha: float = 0.0  # mixup's Beta(α, α) (Zhang et al. 2018); 0: off
    cutmix_alpha: float = 0.0  # cutmix's Beta(α, α) (Yun et al. 2019); 0: off
    auto_augment: str | None = None  # ra | ta_wide | augmix | imagenet
    random_erase: float = 0.0  # probability of erasing a rectangle (Zhong et al. 2020)
    model_ema: bool = False  # keep an exponential moving average of the weights
    model_ema_decay: float = 0.9998  # the EMA's decay per update
    model_ema_steps: int = 1  # optimizer steps between EMA updates
    clip_grad_norm: float | None = None  # the largest gradient norm a step may take
    grad_accum_steps: int = 1  # batches whose gradients add up to one optimizer step
    freeze: list = field(default_factory=list)  # parameter-name patterns (fnmatch) not trained
    patience: int | None = None  # stop after N epochs without a lower held-out error
    recipe: str | None = None  # the named recipe the values came from (--recipe)
    image_size: int | None = None  # images: side of the crop the model sees
    val_fraction: float = 0.2  # images: held-out share of a folder without train/ and val/
    strict: bool = False  # images: fail on undecodable files instead of skipping them
    workers: int | None = None  # images: decoding processes per training process
    # shards: the streams an epoch is read as (convnet/data/shard_plan.py); the process
    # count must divide it. Default: the first run's processes × workers.
    shard_streams: int | None = None
    weights: str | None = None  # initial weights: a file, or torchvision weights by name
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"  # under torchrun: gloo on CPUs, nccl on GPUs
    out: str | None = None
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at the end of each epoch)
    compile: str = "no"  # torch.compile the training step: yes | no
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
    # A torch Dataset of the user's own passed to convnet.fit(data=...), described:
    # {"class": "package.Dataset", "input_size": [C, H, W], "train_images": N, "eval_images": M}.
    # Its items are not in the run, so evaluating the run needs the dataset again.
    custom_data: dict | None = None

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
        """A short name for the data: the data set's, "folder", "shards", or "dataset" (your
        own)."""
        if self.custom_data is not None:
            return "dataset"
        if self.data:
            return "shards" if is_shard_data(self.data) else "folder"
        return self.dataset or "mnist"

    def defaults(self) -> dict:
        """The recipe's defaults for this model on this kind of source: the model's registry
        entry over the source's row of SOURCE_DEFAULTS. A registry entry's `augment` is about
        digits held in memory: photos always take the crop-and-flip augmentation unless
        --no-augment says otherwise."""
        own = dict(self.spec.train_defaults)
        if self.data:
            own.pop("augment", None)
        return {
            key: own.get(key, default) for key, default in SOURCE_DEFAULTS[self.source_kind].items()
        }

    def resolved(self, world_size: int = 1) -> TrainConfig:
        """A copy with every default filled in and every value checked (UserError). Resolving
        a resolved configuration changes nothing but its world size."""
        self.validate()
        values = asdict(self)
        values["dataset"] = None if self.data or self.custom_data else (self.dataset or "mnist")
        for key, default in self.defaults().items():
            if key == "warmup_fraction" and self.lr_warmup_epochs is not None:
                continue  # the warm-up is given in epochs instead
            if values[key] is None:
                values[key] = default
        if values["momentum"] is None and values["opt"] != "adamw":
            values["momentum"] = 0.9
        if self.data:
            if values["image_size"] is None:
                values["image_size"] = self.spec.input_size[1]
            # absolute, so the run finds its images from any working directory
            values["data"] = str(Path(values["data"]).expanduser().resolve())
            values["workers"] = 2 if values["workers"] is None else values["workers"]
            if values["shard_streams"] is None and is_shard_data(values["data"]):
                values["shard_streams"] = world_size * max(1, values["workers"])
        values["world_size"] = world_size
        config = TrainConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        """Refuse what no run can use, naming the flag: an unknown model, both sources at
        once, a value out of its range (`RANGES`; None, the default, is always fine)."""
        if self.dataset and self.data:
            raise UserError("Give either --dataset NAME or --data DIR, not both.")
        if self.custom_data is not None and (self.dataset or self.data):
            raise UserError("Give a Dataset of your own, a data set's name or a folder, not two.")
        _ = self.spec  # an unknown model is refused with the registered names
        from convnet.engine.device import PRECISIONS, resolve_precision

        if self.precision not in PRECISIONS:  # before any process group forms, as the rest
            resolve_precision(self.precision, torch.device("cpu"))  # refuses it, saying why
        for name, (holds, wanted) in RANGES.items():
            value = getattr(self, name)
            if value is not None and not holds(value):
                raise UserError(f"--{name.replace('_', '-')} {wanted}, not {value}.")
        if self.warmup_fraction is not None and self.lr_warmup_epochs is not None:
            raise UserError(
                "Give the warm-up either as a share of the steps (--warmup-fraction) or in "
                "epochs (--lr-warmup-epochs), not both."
            )
        if self.opt == "adamw" and self.momentum is not None:
            raise UserError(
                "--momentum is SGD's and RMSprop's; AdamW keeps its own averages (its betas). "
                "Drop --momentum, or choose --opt sgd-nesterov, sgd or rmsprop."
            )
        if self.lr_scheduler == "multistep" and not self.lr_milestones:
            raise UserError(
                "--lr-scheduler multistep decays the rate at the epochs --lr-milestones names; "
                "give them (e.g. --lr-milestones 30 60 80), or choose --lr-scheduler step."
            )
        warmup, epochs = self.lr_warmup_epochs, self.epochs
        late = [m for m in self.lr_milestones if epochs is not None and m >= epochs]
        if self.lr_scheduler == "multistep" and late:
            below = f", or give a new run milestones below {epochs}" if epochs > 1 else ""
            raise UserError(
                f"--lr-milestones {' '.join(map(str, late))}: the run ends after "
                f"{counted(epochs, 'epoch')}, so the rate would never decay there. Train for "
                f"more than {max(late)} epochs (--epochs){below}."
            )
        if warmup is not None and epochs is not None and warmup > epochs:
            raise UserError(
                f"--lr-warmup-epochs {warmup:g} is longer than the run's "
                f"{counted(epochs, 'epoch')}: the rate would never reach its peak. Shorten "
                "the warm-up."
            )
        if self.lr is not None and self.lr_min >= self.lr:
            raise UserError(f"--lr-min {self.lr_min} must lie below the peak --lr {self.lr}.")
        if any(not isinstance(pattern, str) or not pattern for pattern in self.freeze):
            raise UserError("--freeze takes parameter-name patterns, e.g. 'features.*'.")
        if self.tensorboard:
            check_available()

    def model_inputs(self) -> tuple[tuple[int, int, int], tuple]:
        """The input size and normalization a run's model sees. Image folders are read as
        RGB at the configured crop, normalised as the model's own three-channel inputs are or
        else as ImageNet's. Data sets in memory: see `dataset_inputs`."""
        spec = self.spec
        if self.custom_data is not None:
            return tuple(self.custom_data["input_size"]), spec.normalization
        if self.data is None:
            return dataset_inputs(spec, self.dataset)
        own = spec.input_size[0] == 3 or self.custom_module is not None
        normalization = spec.normalization if own else IMAGENET_NORMALIZATION
        return (3, self.image_size, self.image_size), normalization

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


def dataset_inputs(spec: ModelSpec, dataset: str | None) -> tuple[tuple[int, int, int], tuple]:
    """The input size and normalization model `spec` sees on a registered data set: the
    data set's channels and normalization where it has its own (CIFAR-10), at the model's
    height and width, the model being built with as many input channels; else the model's
    registered ones (the digits; a custom module's, its own)."""
    data = get_dataset_spec(dataset or "mnist")
    if data.normalization is None:
        return spec.input_size, spec.normalization
    return (data.channels, *spec.input_size[1:]), data.normalization


def _not_rebuildable(**options) -> nn.Module:
    raise UserError(
        "A module of your own is not in convnet's model registry; its code is yours, so build "
        "it yourself and pass it (convnet.fit(module, ...), convnet.load_run(path, module=...))."
    )
