"""What every command module shares: output in text or JSON, logging, the data directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from convnet.errors import UserError
from convnet.i18n import LANGUAGES


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help line, then "(default: …)" where a value is taken by default.

    Switches (--json, --no-speed) and options without a default (None: their help says what
    happens then) get no suffix; a help text holding %(default)s places the default itself.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or action.nargs == 0
            or default is None
            or default is argparse.SUPPRESS
            or default == []
        ):
            return text
        return text + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """The `convnet` parser: HelpFormatter on it and on every subparser added below it
    (argparse builds subparsers with the class of the parser they belong to)."""

    def __init__(self, *args, formatter_class: type = HelpFormatter, **kwargs) -> None:
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str) -> NoReturn:
        """A mistake on the command line: the message and where the help is, exit status 2.
        argparse's own error prints the whole usage block (15 lines for `train`) first."""
        self.exit(2, f"{self.prog}: error: {message}. See '{self.prog} --help'.\n")


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, a function adding its arguments, and its runner."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def log(message: str) -> None:
    """Progress and notes go to standard error, so --json output stays one document."""
    print(message, file=sys.stderr, flush=True)


def emit(args: argparse.Namespace, document: object, text: str) -> None:
    print(json.dumps(document, indent=2) if getattr(args, "json", False) else text)


def data_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.data_dir) if getattr(args, "data_dir", None) else None


def check_counts(args: argparse.Namespace, *options: str) -> None:
    """Counts such as --epochs and --train-subset, when given, are at least 1; and --threads
    (`check_threads`)."""
    for option in options:
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, not {value}.")
    check_threads(args)


DEVICE_HELP = "auto (a CUDA GPU, then an Apple GPU, then the CPU), cpu, cuda or mps"
JSON_HELP = "print one JSON document on standard output instead of text"
DATA_DIR_HELP = (
    "the cache of registered data sets (default: $CONVNET_DATA_DIR, else "
    "$XDG_CACHE_HOME/convnet or ~/.cache/convnet)"
)
PRECISION_HELP = (
    "auto (bf16 where the hardware computes it natively, else fp32), fp32, bf16, "
    "or fp16 (CUDA only; training scales the loss)"
)
THREADS_HELP = (
    "CPU threads; 0: automatic, as many as cores are idle now (at least 1, at most PyTorch's count)"
)


INT8_HELP = (
    "; or int8 (a CPU with VNNI: the model quantized by ONNX Runtime, calibrated once on "
    "--calibration-images of the run's training images, kept beside the run)"
)


def add_device_arguments(parser: argparse.ArgumentParser, int8: bool = False) -> None:
    """--device and --precision (both "auto" by default), the same on every command that
    computes with a fixed configuration (`train` leaves them unset, for --resume); with
    `int8`, the commands that only score also take int8 and its calibration."""
    parser.add_argument("--device", default="auto", help=DEVICE_HELP)
    parser.add_argument(
        "--precision", default="auto", help=PRECISION_HELP + (INT8_HELP if int8 else "")
    )
    if int8:
        add_calibration_arguments(parser)


def add_calibration_arguments(parser: argparse.ArgumentParser) -> None:
    """--calibration DIR and --calibration-images N, which calibrate --precision int8."""
    parser.add_argument(
        "--calibration", metavar="DIR", help="--precision int8: calibrate on the images of "
        "this folder (any layout, no labels; default: the run's training images; for bare "
        "weights, those scored)",
    )  # fmt: skip
    parser.add_argument(
        "--calibration-images", type=int, metavar="N", default=256,
        help="--precision int8: how many images calibrate it",
    )  # fmt: skip


def check_calibration(args: argparse.Namespace, precision: str) -> None:
    """--calibration and --calibration-images only with --precision int8; the folder exists."""
    if precision != "int8":
        given = args.calibration is not None or args.calibration_images != 256
        if given:
            raise UserError(
                "--calibration and --calibration-images calibrate --precision int8; this "
                f"command runs in {precision}. Drop them, or add --precision int8."
            )
        return
    folder = args.calibration
    if folder is not None and not Path(folder).is_dir():
        what = "is a file" if Path(folder).exists() else "does not exist"
        raise UserError(
            f"--calibration {folder} {what}; give a folder of images like those the model "
            "will see (any layout, no labels needed) to calibrate int8 on."
        )


def add_threads_argument(parser: argparse.ArgumentParser, help: str = THREADS_HELP) -> None:
    """--threads N, the same on every command that computes."""
    parser.add_argument("--threads", type=int, default=0, metavar="N", help=help)


def check_threads(args: argparse.Namespace) -> None:
    """--threads is 0 (automatic) up to the CPUs this process may use (thousands of threads
    would bury the machine rather than speed anything up)."""
    from convnet.engine.threads import available_cpus

    threads = getattr(args, "threads", 0) or 0
    cpus = available_cpus()
    if not 0 <= threads <= cpus:
        raise UserError(
            f"--threads must be between 0 (automatic) and {cpus}, the CPUs this process may "
            f"use, not {threads}."
        )


def apply_threads(args: argparse.Namespace) -> int:
    """Check --threads and use it for the rest of the command (0: the load-aware automatic
    choice, convnet.engine.threads); returns the count."""
    from convnet.engine.threads import use_threads

    check_threads(args)
    return use_threads(getattr(args, "threads", 0) or 0)


def add_download_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch the torchvision weights --weights names into the torch hub cache first, "
        "checking the hash in their file name (default: offline, the cache only)",
    )


def download_if_asked(args: argparse.Namespace, model: str, weights: str | None) -> None:
    """--download: fetch torchvision's `weights` for `model` into the hub cache now (a no-op
    when the file is there); refused where there is nothing to fetch."""
    if not getattr(args, "download", False):
        return
    if getattr(args, "resume", None):
        raise UserError(
            "--resume continues from the run's own checkpoint; --download has "
            "nothing to fetch. Drop it."
        )
    if not weights:
        raise UserError(
            "--download fetches the torchvision weights that --weights names "
            "(e.g. --weights IMAGENET1K_V1); give --weights NAME."
        )
    from convnet.engine.weight_files import weights_path

    weights_path(model, weights, download=True)


def add_lang_argument(parser: argparse.ArgumentParser, what: str = "its words") -> None:
    """--lang for a command that writes a figure or a page: `what` is drawn or written in
    the language chosen (checked by `convnet.i18n.check_language` when the command runs)."""
    parser.add_argument(
        "--lang", default="en", help=f"the language of {what}: {' or '.join(LANGUAGES)}"
    )


def settings_from_args(settings_class: type, args: argparse.Namespace, **values: object):
    """An experiment's settings dataclass from the flags of the same names, plus `values`."""
    names = (item.name for item in dataclasses.fields(settings_class))
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return settings_class(**{**given, **values})
