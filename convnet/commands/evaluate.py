"""`convnet evaluate`: a run directory or MODEL --weights W, on any data source, through the
one evaluation of the engine; and `load_target`, the model of `evaluate`, `predict` and
`explain`."""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.common import (
    DATA_DIR_HELP,
    JSON_HELP,
    Command,
    add_device_arguments,
    add_download_argument,
    add_lang_argument,
    add_threads_argument,
    apply_threads,
    check_calibration,
    check_counts,
    data_dir,
    download_if_asked,
    emit,
    log,
)
from convnet.commands.train import (
    IMAGE_ONLY,
    check_data_argument,
    refuse_for_shards,
    result_text,
)
from convnet.engine.compiling import COMPILE_CHOICES, COMPILE_FROM_IMAGES, should_compile
from convnet.engine.preparations import PREPARATION_HELP, PREPARATIONS
from convnet.errors import UserError
from convnet.i18n import check_language

WEIGHTS_HELP = (
    "with MODEL: torchvision weights by name (e.g. IMAGENET1K_V1, read from the torch hub "
    "cache; downloaded only with --download) or a weights file (safetensors or PyTorch "
    "state_dict)"
)
OWN_WEIGHTS = " (default: RUN_DIR's own)"
TARGET_HELP = "a run directory, or a registered model with --weights"


def load_target(args: argparse.Namespace):
    """RUN_DIR, or MODEL --weights NAME_OR_FILE, as a LoadedModel. Bare weights scored on
    image folders are built for the folders' classes."""
    from convnet.data.folders import open_image_collection
    from convnet.data.shard_manifest import is_shard_data, open_shards
    from convnet.engine.run import Run
    from convnet.engine.weights_argument import load_weights_argument
    from convnet.models import MODELS

    is_directory, is_model = Path(args.target).is_dir(), args.target in MODELS
    if not args.weights:
        if is_model and not is_directory:
            raise UserError(
                f"'{args.target}' is a model name: give its trained weights with --weights FILE "
                "(or torchvision's weights by NAME), or give a run directory instead."
            )
        loaded = Run(args.target).load()
        if loaded.unfinished:
            log(loaded.unfinished)
        return loaded
    if is_directory and not is_model:
        raise UserError(
            f"{args.target} is a directory, and --weights goes with a model name: a run "
            "directory holds its own weights, so drop --weights, or give the model's name "
            f"(e.g. 'convnet {getattr(args, 'command', 'evaluate')} lenet5 --weights {args.weights}')."
        )
    classes = None
    if getattr(args, "data", None) and is_shard_data(args.data):
        classes = open_shards(args.data).classes
    elif getattr(args, "data", None):
        classes = open_image_collection(
            args.data,
            args.split or "all",
            val_fraction=args.val_fraction or 0.2,
            seed=args.seed or 0,
            ground_truth=args.ground_truth,
        ).classes
    return load_weights_argument(
        args.target,
        args.weights,
        getattr(args, "dataset", None),
        classes=classes,
        data_name=getattr(args, "data", None) or "the data",
    )


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN_DIR|MODEL", help=TARGET_HELP)
    parser.add_argument("--weights", metavar="NAME_OR_FILE", help=WEIGHTS_HELP + OWN_WEIGHTS)
    add_download_argument(parser)
    parser.add_argument(
        "--dataset", metavar="NAME", help="a registered data set (default: the run's)"
    )
    parser.add_argument(
        "--data",
        metavar="DIR",
        help="image files: class folders (train/ and "
        "val/, or one folder of classes) or the ILSVRC2012 layout",
    )
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    parser.add_argument(
        "--batch-size", type=int, help="images per forward pass (default: the data source's)"
    )
    parser.add_argument(
        "--test-subset",
        type=int,
        metavar="N",
        help="score the first N images only (default: all; a run scored on its own data: "
        "its own --test-subset)",
    )
    parser.add_argument(
        "--extremes",
        type=int,
        metavar="N",
        help="how many easiest and hardest classes to list (default: 3; 5 for image files)",
    )
    parser.add_argument(
        "--report", metavar="DIR", help="write an HTML report into DIR (default: none)"
    )
    add_lang_argument(parser, "the report (--report)")
    add_device_arguments(parser, int8=True)
    add_threads_argument(parser)
    parser.add_argument(
        "--compile",
        choices=COMPILE_CHOICES,
        default="auto",
        help="compile the model first (torch.compile); auto does on a CPU for "
        f"{COMPILE_FROM_IMAGES:,} image files or more, where it pays",
    )
    parser.add_argument("--json", action="store_true", help=JSON_HELP)
    images = parser.add_argument_group("image folders only (--data, or a run trained on one)")
    images.add_argument(
        "--split",
        choices=("train", "val", "all"),
        help="which images to score (default: val of the run's own folder, else all)",
    )
    images.add_argument("--workers", type=int, help="decoding processes (default: min(4, CPUs))")
    images.add_argument(
        "--strict", action="store_true", default=None, help="fail on unreadable images"
    )
    images.add_argument(
        "--resize",
        type=int,
        help="shorter side before the centre crop "
        "(default: the run's or the weights' preprocessing)",
    )
    images.add_argument(
        "--crop", type=int, help="side of the centre crop (default: the model's input size)"
    )
    images.add_argument("--preparation", choices=PREPARATIONS, help=PREPARATION_HELP)
    images.add_argument(
        "--val-fraction",
        type=float,
        help="one folder of classes: the share held out (default: the run's)",
    )
    images.add_argument(
        "--seed",
        type=int,
        help="one folder of classes: the seed of the split (default: the run's, else 0)",
    )
    images.add_argument(
        "--ground-truth",
        metavar="FILE",
        help="ILSVRC2012 validation labels found elsewhere, csv or devkit txt "
        "(default: looked for beside the images)",
    )


def _check_image_flags(args: argparse.Namespace, loaded) -> bool:
    """Whether this evaluation reads image files on disk; UserError for flags that apply only
    to image files (or only to folders, not shards) given where they do not."""
    images = bool(args.data) or (
        args.dataset is None and loaded.config is not None and loaded.config.data is not None
    )
    image_flags = (*IMAGE_ONLY, "split", "resize", "crop", "seed", "ground_truth", "preparation")
    given = [f"--{n.replace('_', '-')}" for n in image_flags if getattr(args, n, None) is not None]
    if given and not images:
        raise UserError(
            f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to image "
            "files on disk (--data DIR); this evaluation reads a data set held in memory."
        )
    refuse_for_shards(
        [
            name
            for name in ("val_fraction", "seed", "ground_truth")
            if getattr(args, name) is not None
        ],
        args.data or (loaded.config.data if loaded.config else None),
    )
    return images


def _image_facts(result: dict, source, loaded, workers: int) -> dict:
    """What an evaluation of image files adds to its JSON: layout, workers, speed, the
    preprocessing, each class's folder (set on `result`'s per-class entries), ground truth."""
    facts = {"layout": source.layout, "workers": workers}
    facts["images_per_second"] = result["eval_images_per_second"]
    pre = source.preprocessing
    interpolation = loaded.preprocessing.get("interpolation")
    facts["preprocessing"] = {
        **pre,
        **{
            key: list(pre[key]) if isinstance(pre[key], tuple) else pre[key]
            for key in ("mean", "std")
        },
        "interpolation": str(getattr(interpolation, "value", "bilinear")),
    }
    for entry in result["per_class"]:  # folders matched by name: the class's own folder
        entry["folder"] = entry["name"]
    truth = getattr(getattr(source, "eval_collection", None), "ground_truth", None)
    if truth is not None:
        facts["ground_truth"] = str(truth)
    return facts


def _write_report(args: argparse.Namespace, result: dict, evaluation, lang: str) -> str:
    """--report DIR: the HTML report of this evaluation; returns its path."""
    from convnet.report.evaluation_report import write_evaluation_report
    from convnet.report.plots import report_words, split_name

    split = split_name(result["split"], lang)
    count = result["num_examples"]
    note = report_words(lang, "note.first", count=count, split=split) if args.test_subset else ""
    return str(write_evaluation_report(Path(args.report), result, evaluation, note=note, lang=lang))


def run_evaluate(args: argparse.Namespace) -> int:
    from convnet.data.folders import default_workers
    from convnet.engine.device import resolve_device, resolve_precision
    from convnet.engine.evaluate import evaluate

    check_counts(
        args, "batch_size", "test_subset", "extremes", "resize", "crop", "calibration_images"
    )
    lang = check_language(args.lang)
    if args.data and args.dataset:
        raise UserError("Give either --dataset NAME or --data DIR, not both.")
    threads = apply_threads(args)
    device = resolve_device(args.device)  # a device or precision not here: refused first
    precision = resolve_precision(args.precision, device, inference=True)
    check_calibration(args, precision)
    if args.data:
        check_data_argument(args.data)
    download_if_asked(args, args.target, args.weights)
    loaded = load_target(args)
    images = _check_image_flags(args, loaded)
    loaded.prepare_as(args.preparation)
    if args.crop is not None:
        from convnet.engine.guards import check_input

        loaded.input_size = (loaded.input_size[0], args.crop, args.crop)
        check_input(loaded.model, loaded.name, loaded.input_size, f"--crop (not {args.crop})")
    if args.resize is not None:
        loaded.preprocessing["resize"] = args.resize
    workers = default_workers() if args.workers is None else args.workers
    if workers < 0:
        raise UserError(f"--workers must be 0 or more, not {workers}.")
    source = loaded.evaluation_source(
        args.dataset,
        args.data,
        data_dir=data_dir(args),
        split=args.split,
        workers=workers,
        strict=bool(args.strict),
        ground_truth=args.ground_truth,
        val_fraction=args.val_fraction,
        seed=args.seed,
        test_subset=args.test_subset,
    )
    if source.kind == "images":
        log(loaded.preparation_note)
    params = sum(p.numel() for p in loaded.model.parameters())  # before int8 replaces it
    if precision == "int8":
        from convnet.engine.int8 import int8_for

        loaded.model = int8_for(loaded, source, args.calibration, args.calibration_images, log)
    compile_model = precision != "int8" and should_compile(
        args.compile, source.eval_count, device, on_disk=source.kind == "images"
    )
    evaluation = evaluate(
        loaded.model.to(device),
        source,
        device,
        precision,
        batch_size=args.batch_size,
        extremes=args.extremes or (5 if images else 3),
        strict=bool(args.strict),
        progress=True,
        compile_model=compile_model,
    )
    result = {
        "model": loaded.name,
        "weights": args.weights or str(Path(args.target) / "model.safetensors"),
        "dataset": source.name,
        **evaluation.result,
        "params": params,
        "device": str(device),
        "precision": precision,
        "threads": threads,
        "batch_size": args.batch_size or source.eval_batch_size,
        "compiled": evaluation.compiled,
        **({"int8": loaded.model.note} if precision == "int8" else {}),
    }
    if source.kind == "images":
        result.update(_image_facts(result, source, loaded, workers))
    if loaded.unfinished:
        result["warnings"] = [*result.get("warnings", []), loaded.unfinished]
    if args.report:
        result["report"] = _write_report(args, result, evaluation, lang)
    result.pop("confusion_matrix", None)
    if precision == "int8":
        note = result["int8"]
        log(
            f"Ran in int8 ({note['runtime']}); when made, it agreed with fp32 on "
            f"{note['top1_agreement']:.1%} of {note['checked_on']}."
        )
    emit(args, result, result_text(result))
    return 0


COMMANDS: dict[str, Command] = {
    "evaluate": Command(
        "top-1/top-5 error, per-class accuracy, confusions", configure_evaluate, run_evaluate
    ),
}
