"""The flags of `convnet train`: what each sets in the run's configuration (TrainConfig) or
in the command, and their help."""

from __future__ import annotations

import argparse

from convnet.commands.common import (
    DATA_DIR_HELP,
    DEVICE_HELP,
    JSON_HELP,
    PRECISION_HELP,
    add_download_argument,
    add_lang_argument,
    add_threads_argument,
)
from convnet.engine.compiling import TRAIN_COMPILE_CHOICES

# The flags of `convnet train` that set a field of the run's configuration (TrainConfig),
# each named as its field, and those that steer the command itself. Every flag is in one of
# the two (tests/commands check it against the parser and the dataclass), so none is dropped.
CONFIG_FLAGS = (
    "model", "dataset", "data", "data_dir", "epochs", "batch_size", "lr", "weight_decay",
    "momentum", "warmup_fraction", "label_smoothing", "augment", "weights", "seed",
    "train_subset", "test_subset", "image_size", "val_fraction", "strict", "workers",
    "device", "precision", "backend", "checkpoint_every", "tensorboard", "out",
    "opt", "norm_weight_decay", "lr_scheduler", "lr_warmup_epochs", "lr_step_size",
    "lr_milestones", "lr_gamma", "lr_min", "head_lr_scale", "mixup_alpha", "cutmix_alpha",
    "auto_augment", "random_erase", "model_ema", "model_ema_decay", "model_ema_steps",
    "clip_grad_norm", "grad_accum_steps", "freeze", "patience", "recipe", "shard_streams",
    "compile",
)  # fmt: skip
COMMAND_FLAGS = ("download", "threads", "stop_after_epoch", "config", "resume", "json",
                 "print_config", "lang", "no_report")  # fmt: skip
# Flags that only mean something for image files on disk (--data DIR).
IMAGE_ONLY = ("image_size", "val_fraction", "strict", "workers", "shard_streams")

# The recipe's further options: (flag, type, metavar, help). Named as torchvision's
# references/classification/train.py names them, where it has them.
RECIPE_OPTIONS = [
    ("--opt", str, "NAME", "sgd-nesterov (default), sgd, adamw or rmsprop"),
    ("--norm-weight-decay", float, "X", "weight decay of biases and normalization scales "
     "(default: 0)"),
    ("--lr-scheduler", str, "NAME", "after the warm-up: cosine (default), step, multistep, "
     "onecycle or constant"),
    ("--lr-warmup-epochs", float, "N", "the warm-up in epochs (instead of --warmup-fraction)"),
    ("--lr-step-size", int, "N", "step: decay the rate every N epochs (default: 30)"),
    ("--lr-milestones", int, "N", "multistep: the epochs at which the rate decays"),
    ("--lr-gamma", float, "X", "step, multistep: the factor of each decay (default: 0.1)"),
    ("--lr-min", float, "X", "cosine: the rate at the last step (default: 0)"),
    ("--head-lr-scale", float, "X", "the classifier's learning rate as a multiple of the "
     "others' (fine-tuning; default: 1)"),
    ("--mixup-alpha", float, "X", "mixup with Beta(X, X) (default: 0, off)"),
    ("--cutmix-alpha", float, "X", "cutmix with Beta(X, X) (default: 0, off)"),
    ("--auto-augment", str, "POLICY", "ra (RandAugment), ta_wide (TrivialAugment), augmix or "
     "imagenet (AutoAugment's policy)"),
    ("--random-erase", float, "P", "erase a random rectangle of an image with probability P"),
    ("--model-ema-decay", float, "X", "the moving average's decay per update (default: 0.9998)"),
    ("--model-ema-steps", int, "N", "optimizer steps between updates of the average "
     "(default: 1)"),
    ("--clip-grad-norm", float, "X", "clip the gradients' norm to X"),
    ("--grad-accum-steps", int, "K", "add up K batches' gradients before each optimizer step"),
    ("--freeze", str, "PATTERN", "do not train the parameters whose names match (fnmatch, "
     "e.g. 'features.*'; repeatable)"),
    ("--patience", int, "N", "stop after N epochs without a lower held-out error; keep the "
     "best epoch's weights"),
    ("--recipe", str, "NAME", "start from a named recipe ('convnet train --recipe list' lists "
     "them) or a recipe file; flags given override it"),
]  # fmt: skip
REPEATED = ("--lr-milestones", "--freeze")  # flags that take several values


def add_recipe_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recipe options (torchvision's reference names)")
    for flag, kind, metavar, text in RECIPE_OPTIONS:
        if flag in REPEATED:
            nargs = "+" if flag == "--lr-milestones" else None
            action = "extend" if nargs else "append"
            group.add_argument(flag, type=kind, metavar=metavar, help=text, nargs=nargs,
                               action=action)  # fmt: skip
        else:
            group.add_argument(flag, type=kind, metavar=metavar, help=text)
    group.add_argument("--model-ema", action="store_true", default=None,
                       help="keep an exponential moving average of the weights, evaluate it "
                       "beside them every epoch, and keep it as the run's model")  # fmt: skip
    group.add_argument("--print-config", action="store_true",
                       help="print the resolved configuration as JSON and exit without "
                       "training")  # fmt: skip


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        nargs="?",
        help="a registered model, listed at the end of "
        "'convnet --help' (default: the --config's or --resume's)",
    )
    source = parser.add_argument_group("data (one of)")
    source.add_argument(
        "--dataset",
        metavar="NAME",
        help="a registered data set held in "
        "memory, as 'convnet data list' names it (default: mnist)",
    )
    source.add_argument(
        "--data",
        metavar="DIR",
        help="image files: DIR/train/<class>/*, "
        "DIR/val/<class>/* (or DIR/<class>/*, split by --val-fraction) or ILSVRC2012; or the "
        "tar shards 'convnet data shard' wrote: their folder, or a brace pattern of them",
    )
    source.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    recipe = parser.add_argument_group("recipe (defaults: the model's, then the data source's)")
    recipe.add_argument("--epochs", type=int, help="passes over the training images")
    recipe.add_argument("--batch-size", type=int, help="images per step, per process")
    recipe.add_argument("--lr", type=float, help="peak learning rate")
    recipe.add_argument("--weight-decay", type=float, help="L2 penalty on the weights")
    recipe.add_argument("--momentum", type=float, help="SGD momentum")
    recipe.add_argument("--warmup-fraction", type=float, help="share of the steps warming up")
    recipe.add_argument(
        "--label-smoothing", type=float, help="share of each label spread over the other classes"
    )
    recipe.add_argument(
        "--no-augment",
        dest="augment",
        action="store_false",
        default=None,
        help="train on the images as they are (default: the recipe's augmentation)",
    )
    recipe.add_argument(
        "--weights",
        metavar="NAME_OR_FILE",
        help="start from these weights: a "
        "file, or torchvision weights by name from the hub cache; a classifier "
        "for another class count starts afresh (fine-tuning; default: random "
        "initialization)",
    )
    add_download_argument(recipe)
    recipe.add_argument(
        "--seed",
        type=int,
        help="seed of the initialization, the order and the augmentation (default: 0)",
    )
    recipe.add_argument(
        "--train-subset", type=int, metavar="N", help="train on N images only (default: all)"
    )
    recipe.add_argument(
        "--test-subset",
        type=int,
        metavar="N",
        help="score the first N held-out images only (default: all)",
    )
    add_recipe_options(parser)
    _add_image_folder_options(parser)
    _add_machine_options(parser)


def _add_image_folder_options(parser: argparse.ArgumentParser) -> None:
    """The flags that apply to image files on disk (--data) only."""
    images = parser.add_argument_group("image folders only (--data)")
    images.add_argument(
        "--image-size",
        type=int,
        metavar="PIXELS",
        help="side of the crop the model sees (default: its input size)",
    )
    images.add_argument(
        "--val-fraction",
        type=float,
        help="held-out share of a folder without train/ and val/ (default: 0.2)",
    )
    images.add_argument(
        "--strict",
        action="store_true",
        default=None,
        help="fail on corrupt or empty image files instead of skipping them",
    )
    images.add_argument(
        "--workers", type=int, help="decoding processes per training process (default: 2)"
    )
    images.add_argument(
        "--shard-streams",
        type=int,
        metavar="G",
        help="shards only: read each epoch as G streams; the process count must divide G, and "
        "W processes with batch B train as one process with batch W·B and the same G "
        "(default: processes × workers)",
    )


def _add_machine_options(parser: argparse.ArgumentParser) -> None:
    """Where and how the run computes and what it writes."""
    machine = parser.add_argument_group("machine and run")
    machine.add_argument("--device", help=DEVICE_HELP + " (default: auto)")
    machine.add_argument("--precision", help=PRECISION_HELP + " (default: auto)")
    machine.add_argument(
        "--backend", help="auto, gloo or nccl: how processes under torchrun talk (default: auto)"
    )
    add_threads_argument(machine)
    machine.add_argument(
        "--compile",
        choices=TRAIN_COMPILE_CHOICES,
        help="compile the training step, forward and backward (torch.compile; default: no); "
        "where compiling fails the step runs uncompiled, with a note",
    )
    machine.add_argument(
        "--checkpoint-every",
        type=int,
        metavar="STEPS",
        help="also save a "
        "resumable checkpoint every STEPS steps, at least 1 (default: after "
        "each epoch only)",
    )
    machine.add_argument(
        "--tensorboard",
        action="store_true",
        default=None,
        help="also write TensorBoard event files into RUN_DIR/tensorboard "
        "(needs the tensorboard package)",
    )
    machine.add_argument(
        "--stop-after-epoch",
        type=int,
        metavar="N",
        help="stop after epoch N, resumably; continue with --resume",
    )
    machine.add_argument(
        "--config", metavar="FILE", help="start from a saved config.json; flags given override it"
    )
    machine.add_argument(
        "--out",
        metavar="RUN_DIR",
        help="the run directory to write (default: runs/MODEL-SOURCE-TIME)",
    )
    machine.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run from its checkpoint (--epochs N continues it to N epochs)",
    )
    add_lang_argument(machine, "the run's report (report.html and its figures)")
    machine.add_argument(
        "--no-report",
        action="store_true",
        help="write no report (report.html and its figures, about 2 s) at the end, e.g. in a "
        "sweep; 'convnet train --resume RUN_DIR' writes it later",
    )
    machine.add_argument("--json", action="store_true", help=JSON_HELP)
