"""Core commands: data (list, fetch, shard) and summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.common import (
    DATA_DIR_HELP,
    JSON_HELP,
    Command,
    add_download_argument,
    data_dir,
    download_if_asked,
    emit,
    log,
)
from convnet.commands.evaluate import WEIGHTS_HELP
from convnet.errors import UserError
from convnet.wording import counted

# --- data ------------------------------------------------------------------------------


def configure_data(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list the registered data sets")
    listing.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    listing.add_argument("--json", action="store_true", help=JSON_HELP)
    fetch = actions.add_parser("fetch", help="fetch a data set and verify its SHA-256 checksums")
    fetch.add_argument("name", help="the data set, as 'convnet data list' names it")
    fetch.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    fetch.add_argument(
        "--source",
        metavar="DIR_OR_ARCHIVE",
        help="the only source tried: a directory holding the data set's files (the IDX "
        "files, raw or .gz; CIFAR-10's .bin files), or CIFAR-10's official "
        "cifar-10-binary.tar.gz; refused when it does not hold them (default: the packages "
        "and URLs the data set's entry names)",
    )
    _configure_shard(actions)


def _configure_shard(actions) -> None:
    from convnet.data.shard_manifest import DEFAULT_SHARD_SIZE

    shard = actions.add_parser(
        "shard",
        help="write an image folder as WebDataset tar shards with a manifest, which "
        "'convnet train|evaluate --data OUT' read as streams",
    )
    shard.add_argument(
        "folder",
        metavar="DIR",
        help="an image folder as --data reads it: train/ and val/, one folder of class "
        "folders (split by --val-fraction) or ILSVRC2012",
    )
    shard.add_argument("--out", metavar="OUT", required=True, help="the folder to write")
    shard.add_argument(
        "--shard-size",
        metavar="SIZE",
        default=DEFAULT_SHARD_SIZE,
        help="at most SIZE per shard: a number of images (1000) or of bytes (256MB, 1GB)",
    )
    shard.add_argument(
        "--val-fraction",
        type=float,
        help="one folder of class folders: the held-out share (default: 0.2, as --data)",
    )
    shard.add_argument(
        "--seed",
        type=int,
        default=0,
        help="of the training images' order in the shards and of a class-folder split",
    )
    shard.add_argument(
        "--strict",
        action="store_true",
        help="fail on empty or unreadable image files instead of leaving them out",
    )
    shard.add_argument(
        "--ground-truth",
        metavar="FILE",
        help="ILSVRC2012 validation labels found elsewhere (default: looked for beside them)",
    )
    shard.add_argument("--json", action="store_true", help=JSON_HELP)


def _run_shard(args: argparse.Namespace) -> int:
    from convnet.data.shard_writer import write_shards

    if args.val_fraction is not None and not 0 < args.val_fraction < 1:
        raise UserError(f"--val-fraction must lie between 0 and 1, not {args.val_fraction}.")
    manifest = write_shards(
        args.folder,
        args.out,
        args.shard_size,
        val_fraction=args.val_fraction,
        seed=args.seed,
        strict=args.strict,
        ground_truth=args.ground_truth,
    )
    splits = manifest["splits"]
    summary = {
        "out": str(Path(args.out).expanduser()),
        "classes": len(manifest["classes"]),
        **{
            split: {"images": entry["images"], "shards": len(entry["shards"])}
            for split, entry in splits.items()
        },
        "skipped": manifest["skipped"],
    }
    left_out = sum(len(rows) for rows in manifest["skipped"].values())
    text = (
        f"{summary['out']}: "
        + ", ".join(
            f"{entry['images']:,} {split} images in {counted(len(entry['shards']), 'shard')}"
            for split, entry in splits.items()
        )
        + f", {summary['classes']} classes"
        + (f"; {counted(left_out, 'file')} left out (listed in manifest.json)" if left_out else "")
        + f". Train on them with --data {summary['out']}."
    )
    emit(args, summary, text)
    return 0


def run_data(args: argparse.Namespace) -> int:
    from convnet.data.datasets import DATASETS, default_data_dir, fetch_dataset, is_cached

    if args.action == "shard":
        return _run_shard(args)
    if args.action == "fetch":
        if args.source == "":
            raise UserError("--source is empty; give the directory or archive to fetch from.")
        source = Path(args.source) if args.source is not None else None
        path = fetch_dataset(args.name, data_dir(args), source, log=log)
        print(path)
        return 0
    rows = [
        {
            "name": spec.name,
            "description": spec.description,
            "classes": len(spec.class_names),
            "cached": is_cached(spec.name, data_dir(args)),
            "citation": spec.citation,
        }
        for spec in DATASETS.values()
    ]
    text = (
        "\n".join(
            f"{row['name']:<15} {'cached ' if row['cached'] else 'missing'}  {row['description']}"
            for row in rows
        )
        + f"\n(cache: {data_dir(args) or default_data_dir()})"
    )
    emit(args, rows, text)
    return 0


# --- summary ---------------------------------------------------------------------------


def configure_summary(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a registered model (listed at the end of 'convnet --help')")
    parser.add_argument(
        "--input-size",
        nargs=3,
        type=int,
        metavar=("C", "H", "W"),
        help="channels, height and width of the input (default: the model's)",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        help="classifier outputs, at least 2 (default: 1000 for the ImageNet families, else "
        "10; with --weights, the count in the weights)",
    )
    parser.add_argument(
        "--weights",
        metavar="NAME_OR_FILE",
        help=WEIGHTS_HELP + "; checks they fit the model (default: none, only shapes and counts)",
    )
    add_download_argument(parser)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def _published_text(name: str, summary) -> str:
    """Compare an ImageNet model's counts with torchvision's published ones (its weights'
    metadata, shipped inside torchvision) and name its ILSVRC entry."""
    import torchvision

    from convnet.models.imagenet import CHALLENGE_ENTRIES

    entry = CHALLENGE_ENTRIES[name]
    lines = [
        f"ILSVRC {entry.year}: {entry.entry}, top-5 error {entry.top5_error}% ({entry.source})"
    ]
    meta = next(iter(torchvision.models.get_model_weights(name))).meta
    total = summary.total
    if summary.layers and summary.layers[-1].output_shape == [1000]:
        params, gmacs = meta["num_params"], meta["_ops"]
        lines.append(
            f"torchvision publishes {params:,} parameters ({'equal' if total['params'] == params else 'differs'}) "
            f"and {gmacs} GFLOPS = GMACs ({(total['macs'] / 1e9 - gmacs) / gmacs:+.1%} here)"
        )
    return "\n".join(lines)


def run_summary(args: argparse.Namespace) -> int:
    from convnet.analysis.summary import LENET5_SOURCES, matching_sources, summarize
    from convnet.models import get_model_spec

    spec = get_model_spec(args.model)
    size = tuple(args.input_size) if args.input_size else spec.input_size
    if min(size) < 1:
        raise UserError(f"--input-size must be positive, not {' '.join(map(str, size))}.")
    if args.num_classes is not None and args.num_classes < 2:
        raise UserError(
            f"--num-classes must be at least 2 (a classifier needs at least 2 "
            f"classes), not {args.num_classes}."
        )
    download_if_asked(args, args.model, args.weights)
    if args.weights:
        from convnet.engine.weights_argument import load_weights_argument

        if size[0] != spec.input_size[0]:
            raise UserError("--weights fit the model's own input channels; drop --input-size C.")
        loaded = load_weights_argument(args.model, args.weights)
        count = len(loaded.class_names)
        if args.num_classes is not None and args.num_classes != count:
            raise UserError(
                f"--weights {args.weights} classify {count} classes, not the "
                f"{args.num_classes} of --num-classes; drop --num-classes."
            )
        model = loaded.model
    else:
        # Shapes and counts need no arithmetic: an ImageNet-size network is built on the meta
        # device (no memory, no initialization), so VGG-19 at 224×224 takes a moment.
        from convnet.models import shapes_model
        from convnet.models.imagenet import CHALLENGE_ENTRIES

        classes = args.num_classes
        if classes is None:
            classes = 1000 if args.model in CHALLENGE_ENTRIES else 10
        model = shapes_model(args.model, classes, size[0])
    try:
        summary = summarize(model, size, args.model)
    except RuntimeError as error:
        raise UserError(
            f"{args.model} cannot take input of size {size}: {str(error).splitlines()[0]}"
        ) from None
    heading = f"{args.model}: {spec.description}\ninput {size[0]}×{size[1]}×{size[2]}"
    text = f"{heading}\n\n{summary}"
    if spec.family == "LeNet":
        matches = matching_sources(summary)
        text += "\n\n" + "\n".join(
            f"{'matches' if ok else 'differs from'} {source}: {LENET5_SOURCES[source]['trainable_params']:,} "
            f"trainable parameters, {LENET5_SOURCES[source]['connections']:,} connections"
            for source, ok in matches.items()
        )
        text += (
            "\nNote: the lecture's 'about 14,000 parameters and 187,000 connections' does not match the "
            "published LeNet-5 (60,000 and 340,908, LeCun et al. 1998, §II-B)."
        )
    from convnet.models.imagenet import CHALLENGE_ENTRIES

    if args.model in CHALLENGE_ENTRIES and size == spec.input_size:
        text += "\n\n" + _published_text(args.model, summary)
    emit(args, summary.to_dict(), text)
    return 0


COMMANDS: dict[str, Command] = {
    "data": Command(
        "list and fetch data sets; write image folders as tar shards", configure_data, run_data
    ),
    "summary": Command(
        "per-layer parameters, connections, MACs and depth of a model",
        configure_summary,
        run_summary,
    ),
}
