"""`convnet demo`: the quick start's main job. Fetches MNIST, trains LeNet-5 with its own
recipe through the same engine as `convnet train`, evaluates it and writes its report."""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.common import (
    DATA_DIR_HELP,
    JSON_HELP,
    Command,
    add_lang_argument,
    data_dir,
    emit,
    log,
)
from convnet.commands.train import finish_run, result_text
from convnet.errors import UserError
from convnet.i18n import check_language


def configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--epochs", type=int, help="fewer epochs for a quicker look (default: lenet5's recipe)"
    )
    parser.add_argument("--out", metavar="RUN_DIR", default="runs/demo", help="the run directory")
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    add_lang_argument(parser, "the run's report")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def run_demo(args: argparse.Namespace) -> int:
    from convnet.data.datasets import fetch_dataset
    from convnet.engine.config import TrainConfig
    from convnet.engine.train import fit

    if args.epochs is not None and args.epochs < 1:
        raise UserError(f"--epochs must be at least 1, not {args.epochs}.")
    lang = check_language(args.lang)
    fetch_dataset("mnist", data_dir(args), log=log)
    log(f"Training lenet5 on MNIST into {args.out} …")
    config = TrainConfig(
        model="lenet5", dataset="mnist", data_dir=args.data_dir, epochs=args.epochs, out=args.out
    )
    result = finish_run(Path(args.out), fit(config, log=log), lang=lang)
    emit(
        args,
        result,
        result_text(result) + f"\n\nOpen {result['report']} in a browser to see the report.",
    )
    return 0


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "fetch MNIST, train LeNet-5, evaluate it and write its report",
        configure_demo,
        run_demo,
    ),
}
