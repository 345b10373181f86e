"""`convnet train MODEL --data DIR`: training on image folders, as one process or under torchrun.

Every rank runs this same code; only rank 0 prints, and a mistake is reported once (by the
lowest rank that made it) while the other ranks exit with the same status 2 quietly.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from convnet.commands.common import emit, log
from convnet.errors import UserError


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `convnet train MODEL --data DIR` (the others are shared with MNIST)."""
    group = parser.add_argument_group("image folders (--data) and distributed training")
    group.add_argument("--data", metavar="DIR", help="an image folder: DIR/train/<class>/*, "
                       "DIR/val/<class>/* (or DIR/<class>/*, split by --val-fraction) or ILSVRC2012")  # fmt: skip
    group.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding "
                       "images, per training process (default 2)")  # fmt: skip
    group.add_argument("--val-fraction", type=float, default=0.2,
                       help="held-out share of a folder without train/ and val/ (default 0.2)")  # fmt: skip
    group.add_argument("--strict", action="store_true",
                       help="fail on corrupt or empty image files instead of skipping them")  # fmt: skip
    group.add_argument("--label-smoothing", type=float, help="default 0.1 with --data")
    group.add_argument("--image-size", type=int, metavar="PIXELS",
                       help="side of the training crop (default: the model's input size)")  # fmt: skip
    group.add_argument("--backend", default="auto", help="auto|gloo|nccl (under torchrun: "
                       "nccl on GPUs, gloo on CPUs)")  # fmt: skip
    group.add_argument("--weights", metavar="NAME_OR_FILE", help="start from these weights: "
                       "a weights file, or torchvision weights by name from the hub cache")  # fmt: skip
    group.add_argument("--stop-after-epoch", type=int, metavar="N", help="stop after epoch N, "
                       "resumably (e.g. for a time-limited job); continue with --resume")  # fmt: skip


def wants_folder_training(args: argparse.Namespace) -> bool:
    """--data, a launch by torchrun (MNIST training is single-process), or resuming a folder run."""
    if args.data or "WORLD_SIZE" in os.environ:
        return True
    config = Path(args.resume or "") / "config.json"
    if args.resume and config.is_file():
        try:
            return json.loads(config.read_text()).get("dataset") == "folder"
        except (ValueError, OSError, AttributeError):
            return False
    return False


def _config(args: argparse.Namespace):
    from convnet.engine.folder_train import FolderTrainConfig

    if args.resume is None and args.model is None:
        raise UserError("Name a model to train (e.g. 'convnet train resnet18 --data DIR') or "
                        "give --resume RUN_DIR.")  # fmt: skip
    if args.resume is None and not args.data:
        raise UserError("Give the image folder to train on with --data DIR.")
    if args.data and not Path(args.data).is_dir():
        raise UserError(f"Data folder {args.data} does not exist (or is not a folder).")
    smoothing = 0.1 if args.label_smoothing is None else args.label_smoothing
    return FolderTrainConfig(
        model=args.model or "resnet18", data_dir=args.data or "", epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        label_smoothing=smoothing, augment=args.augment is not False, image_size=args.image_size,
        val_fraction=args.val_fraction, strict=args.strict, seed=args.seed, device=args.device,
        precision=args.precision, backend=args.backend, workers=args.workers,
        weights=args.weights, out=args.out,
    )  # fmt: skip


def _text(result: dict) -> str:
    def classes(rows: list[dict]) -> str:
        return ", ".join(f"{row['name']} {row['accuracy']:.2%}" for row in rows)

    return "\n".join([
        f"{result['model']} on {result['data_dir']}: validation error {result['top1_error']:.2%} "
        f"(top-5 {result['top5_error']:.2%}) on {result['num_examples']:,} images",
        f"trained {result['epochs']} epochs in {result['train_seconds']:.1f} s "
        f"({result['images_per_second']:,.0f} images/s, {result['precision']} on "
        f"{result['device']}) by {result['world_size']} process(es) × batch "
        f"{result['batch_size']} = global batch {result['global_batch_size']}; replicas "
        f"identical: {result['replicas_identical']}",
        f"easiest: {classes(result['easiest'])}",
        f"hardest: {classes(result['hardest'])}",
        f"run directory: {result['run_dir']}",
        f"report: {result['report']}",
    ])  # fmt: skip


def run_folder_train(args: argparse.Namespace) -> int:
    from convnet.engine import distributed
    from convnet.engine.folder_train import fit_folders
    from convnet.engine.runs import read_history
    from convnet.report.folder_report import write_folder_report

    rank_text = os.environ.get("RANK", "0")
    launched_rank = int(rank_text) if rank_text.isdigit() else 0
    try:
        config = _config(args)
        session = distributed.start(args.device, args.backend)
    except distributed.RankError:
        raise
    except UserError:
        if launched_rank != 0:  # every rank hit the same mistake: rank 0 reports it
            return 2
        raise
    try:
        result = fit_folders(
            config, Path(args.resume) if args.resume else None, data_dir=args.data,
            workers=args.workers, stop_after_epoch=args.stop_after_epoch, log=log,
        )  # fmt: skip
    except distributed.PeerFailure:
        return 2
    except UserError as error:
        if not session.is_main:
            raise UserError(f"(rank {session.rank}) {error}") from None
        raise
    except KeyboardInterrupt:
        if not session.is_main:
            return 130
        raise
    finally:
        distributed.stop()
    if not session.is_main:
        return 0
    if "stopped_after_epoch" in result:
        emit(args, result, f"Stopped after epoch {result['stopped_after_epoch']} of "
                           f"{result['epochs']}; run directory: {result['run_dir']}")  # fmt: skip
        return 0
    report = write_folder_report(Path(result["run_dir"]), result, read_history(result["run_dir"]))
    result["report"] = str(report)
    emit(args, result, _text(result))
    return 0
