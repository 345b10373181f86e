"""`convnet evaluate MODEL --weights W --data DIR`: score a model on an image collection on
disk (image folders or ILSVRC2012), preprocessed the way its weights expect.

The arguments are added to `convnet evaluate` in core.py; `run_evaluate` hands over here
when --data is given.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from convnet.commands.common import emit, log
from convnet.errors import UserError

# torchvision's classic ImageNet evaluation: shorter side 256, centre crop 224 (crop/0.875).
RESIZE_RATIO = 256 / 224


def add_folder_arguments(parser: argparse.ArgumentParser) -> None:
    """The --data arguments of `convnet evaluate`."""
    group = parser.add_argument_group("image folders and ILSVRC2012 (--data DIR)")
    group.add_argument(
        "--data", metavar="DIR",
        help="class folders (train/ and val/, or one folder split by --val-fraction) or the "
        "ILSVRC2012 layout (flat val/ with LOC_val_solution.csv or the devkit)",
    )  # fmt: skip
    group.add_argument("--split", default="val", choices=("train", "val"))
    group.add_argument("--batch-size", type=int, default=64)
    group.add_argument("--workers", type=int, help="decoding processes (default min(4, CPUs))")
    group.add_argument("--strict", action="store_true", help="fail on unreadable images")
    group.add_argument("--extremes", type=int, default=5, metavar="N",
                       help="how many easiest and hardest classes to list")  # fmt: skip
    group.add_argument("--report", metavar="DIR", help="write an HTML report into DIR")
    group.add_argument("--resize", type=int, help="shorter side before the centre crop")
    group.add_argument("--crop", type=int, help="centre crop (the model's input size)")
    group.add_argument("--val-fraction", type=float,
                       help="one folder of classes: the share held out (default: the run's, or 0.2)")  # fmt: skip
    group.add_argument("--seed", type=int,
                       help="one folder of classes: the seed of the split (default: the run's, or 0)")  # fmt: skip
    group.add_argument("--ground-truth", metavar="FILE",
                       help="ILSVRC2012 validation labels found elsewhere (csv or devkit txt)")  # fmt: skip


@dataclass
class Source:
    """Where the model comes from: MODEL --weights W, or a run directory's saved settings."""

    name: str
    weights: str
    model_config: dict
    in_channels: int | None = None  # None: the registry's
    image_size: int | None = None  # a folder run's training crop
    normalization: tuple | None = None
    val_fraction: float = 0.2
    seed: int = 0


@dataclass
class Prepared:
    name: str
    model: object  # nn.Module
    weights: str
    class_names: tuple[str, ...]
    resize: int
    crop: int
    mean: object
    std: object
    interpolation: object  # torchvision InterpolationMode
    channels: int


def weights_source(args: argparse.Namespace) -> Source:
    """MODEL --weights W, or a run directory (`convnet train`, with or without --data)."""
    if args.weights:
        return Source(args.target, args.weights, {})
    import json

    from convnet.engine.checkpoint import CONFIG_FILE, WEIGHTS_FILE
    from convnet.models.imagenet import IMAGENET_NORMALIZATION

    run_dir = Path(args.target)
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(
            f"With --data, give a run directory or MODEL --weights NAME_OR_FILE; {run_dir} is "
            f"not a run directory (no {CONFIG_FILE})."
        )
    try:
        config = json.loads((run_dir / CONFIG_FILE).read_text())
        name, model_config = str(config["model"]), dict(config.get("model_config") or {})
    except (ValueError, TypeError, KeyError, OSError) as error:
        raise UserError(
            f"{run_dir / CONFIG_FILE} is not a valid run configuration ({error})."
        ) from None
    if config.get("dataset") != "folder":  # an MNIST-style run: the registry's input
        return Source(name, str(run_dir / WEIGHTS_FILE), model_config)
    # an image-folder run trains every model on RGB at its --image-size, with the model's
    # normalization where it reads 3 channels and ImageNet's otherwise (engine/folder_train)
    from convnet.models import get_model_spec

    spec = get_model_spec(name)
    return Source(
        name, str(run_dir / WEIGHTS_FILE), model_config, in_channels=3,
        image_size=config.get("image_size"),
        normalization=spec.normalization if spec.input_size[0] == 3 else IMAGENET_NORMALIZATION,
        val_fraction=float(config.get("val_fraction", 0.2)), seed=int(config.get("seed", 0)),
    )  # fmt: skip


def _count_in_file(model, path: Path, num_classes: int) -> int | None:
    """The class count of a weights file: the output size of the model's last layer whose
    output size is the class count (its classifier), as stored in the file."""
    from convnet.engine.checkpoint import read_state_file

    tensors, _ = read_state_file(path)
    classifier = [k for k, v in model.state_dict().items()
                  if k.endswith("weight") and v.dim() >= 2 and v.shape[0] == num_classes]  # fmt: skip
    if classifier and classifier[-1] in tensors:
        return int(tensors[classifier[-1]].shape[0])
    return None


def prepare_model(args: argparse.Namespace, source: Source, classes: tuple[str, ...]) -> Prepared:
    """Build the model for the collection's classes, load its weights, and find the
    preprocessing and class names that belong to them."""
    import torchvision
    from torchvision.transforms import InterpolationMode

    from convnet.engine.checkpoint import load_weights
    from convnet.engine.runs import WEIGHT_NAME, hub_weights
    from convnet.models import get_model, get_model_spec
    from convnet.models.imagenet import CHALLENGE_ENTRIES

    name, weights = source.name, source.weights
    spec = get_model_spec(name)
    channels = source.in_channels or spec.input_size[0]
    crop = source.image_size or spec.input_size[1]
    mean, std = source.normalization or spec.normalization
    interpolation = InterpolationMode.BILINEAR
    resize = None
    class_names = classes
    if WEIGHT_NAME.match(weights) and not Path(weights).exists():
        path, categories = hub_weights(name, weights)
        if len(categories) != len(classes):
            raise UserError(
                f"torchvision's {name} {weights} weights classify {len(categories)} classes, but "
                f"{args.data} has {len(classes)}; they need the 1,000 ImageNet classes."
            )
        preset = torchvision.models.get_model_weights(name)[weights].transforms()
        resize, crop = preset.resize_size[0], preset.crop_size[0]
        mean, std, interpolation = tuple(preset.mean), tuple(preset.std), preset.interpolation
        class_names = tuple(categories)
    else:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"Weights file {path} does not exist.")
        if name in CHALLENGE_ENTRIES and len(classes) == 1000:  # the names in torchvision's order
            class_names = tuple(
                next(iter(torchvision.models.get_model_weights(name))).meta["categories"]
            )
    model = get_model(name, num_classes=len(classes), in_channels=channels, **source.model_config)
    try:
        load_weights(model, path)
    except UserError:
        count = _count_in_file(model, path, len(classes))
        if count is not None and count != len(classes):
            raise UserError(
                f"The weights file {path} is for {count} classes, but {args.data} has "
                f"{len(classes)} ({', '.join(classes[:5])}{', …' if len(classes) > 5 else ''}); "
                "evaluate it on data with the classes it was trained for."
            ) from None
        raise
    crop = args.crop or crop
    resize = args.resize or (round(crop * RESIZE_RATIO) if args.crop or resize is None else resize)
    if resize < crop:
        raise UserError(f"--resize {resize} is smaller than the centre crop {crop}.")
    return Prepared(name, model, weights, class_names, resize, crop, mean, std, interpolation,
                    channels)  # fmt: skip


def _text(result: dict) -> str:
    pre = result["preprocessing"]
    lines = [
        f"{result['model']} ({result['weights']}) on {result['dataset']} ({result['layout']}, "
        f"{result['split']}): top-1 error {result['top1_error']:.2%}, top-5 error "
        f"{result['top5_error']:.2%} on {result['num_examples']:,} images",
        f"preprocessing: resize {pre['resize']}, centre crop {pre['crop']} ({pre['interpolation']}), "
        f"mean {pre['mean']}, std {pre['std']}",
        f"{result['images_per_second']:,.1f} images/s ({result['precision']} on {result['device']}, "
        f"{result['workers']} decoding workers, batch {result['batch_size']})",
        "easiest: " + ", ".join(f"{r['name']} {r['accuracy']:.2%}" for r in result["easiest"]),
        "hardest: " + ", ".join(f"{r['name']} {r['accuracy']:.2%}" for r in result["hardest"]),
    ]
    if result["confusions"]:
        lines.append("most confused: " + ", ".join(
            f"{c['true']}→{c['predicted']} ×{c['count']}" for c in result["confusions"]))  # fmt: skip
    if result["skipped"]:
        shown = result["skipped"][:10]
        lines.append(f"skipped {result['num_skipped']} file(s): " + "; ".join(
            f"{s['file']} ({s['reason']})" for s in shown)
            + (f"; and {result['num_skipped'] - len(shown)} more" if result["num_skipped"] > 10 else ""))  # fmt: skip
    if "report" in result:
        lines.append(f"report: {result['report']}")
    return "\n".join(lines)


def run_folder_evaluate(args: argparse.Namespace) -> int:
    from convnet.data.folders import default_workers, evaluation_transform, open_image_collection
    from convnet.engine.device import resolve_device, resolve_precision
    from convnet.engine.folder_eval import evaluate_collection

    if args.extremes < 1:
        raise UserError(f"--extremes must be at least 1, not {args.extremes}.")
    source = weights_source(args)
    collection = open_image_collection(
        args.data, args.split,
        val_fraction=source.val_fraction if args.val_fraction is None else args.val_fraction,
        seed=source.seed if args.seed is None else args.seed,
        strict=args.strict, ground_truth=args.ground_truth,
    )  # fmt: skip
    log(collection.describe())
    prepared = prepare_model(args, source, collection.classes)
    transform = evaluation_transform(
        prepared.resize, prepared.crop, prepared.mean, prepared.std, prepared.interpolation,
        channels=prepared.channels,
    )  # fmt: skip
    device = resolve_device(args.device)
    precision = resolve_precision(args.precision, device)
    workers = default_workers() if args.workers is None else args.workers
    evaluation = evaluate_collection(
        prepared.model.to(device), collection, transform, device, precision, args.batch_size,
        workers, class_names=prepared.class_names, extremes=args.extremes, strict=args.strict,
    )  # fmt: skip
    result = {
        "model": prepared.name,
        "weights": prepared.weights,
        **evaluation.result,
        "params": sum(p.numel() for p in prepared.model.parameters()),
        "preprocessing": {
            "resize": prepared.resize, "crop": prepared.crop,
            "interpolation": str(prepared.interpolation.value),
            "mean": list(prepared.mean) if isinstance(prepared.mean, tuple) else prepared.mean,
            "std": list(prepared.std) if isinstance(prepared.std, tuple) else prepared.std,
            "channels": prepared.channels,
        },
        "device": str(device), "precision": precision, "workers": workers,
        "batch_size": args.batch_size,
    }  # fmt: skip
    if args.report:
        from convnet.report.evaluation_report import write_evaluation_report

        result["report"] = str(write_evaluation_report(Path(args.report), result, evaluation))
    result.pop("confusion_matrix", None)
    emit(args, result, _text(result))
    return 0
