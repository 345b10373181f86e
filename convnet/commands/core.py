"""Core commands: data, summary, train, evaluate, predict, demo."""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.common import Command, data_dir, emit, log
from convnet.errors import UserError

# --- data ------------------------------------------------------------------------------


def configure_data(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list the registered data sets")
    listing.add_argument(
        "--data-dir", help="data cache (default $CONVNET_DATA_DIR or ~/.cache/convnet)"
    )
    listing.add_argument("--json", action="store_true")
    fetch = actions.add_parser("fetch", help="fetch a data set and verify its SHA-256 checksums")
    fetch.add_argument("name")
    fetch.add_argument(
        "--data-dir", help="data cache (default $CONVNET_DATA_DIR or ~/.cache/convnet)"
    )
    fetch.add_argument("--source", help="a directory holding the IDX files (raw or .gz)")


def run_data(args: argparse.Namespace) -> int:
    from convnet.data.datasets import DATASETS, default_data_dir, fetch_dataset, is_cached

    if args.action == "fetch":
        source = Path(args.source) if args.source else None
        path = fetch_dataset(args.name, data_dir(args), source, log=log)
        print(path)
        return 0
    rows = [
        {"name": spec.name, "description": spec.description, "classes": len(spec.class_names),
         "cached": is_cached(spec.name, data_dir(args)), "citation": spec.citation}
        for spec in DATASETS.values()
    ]  # fmt: skip
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
    parser.add_argument("model")
    parser.add_argument("--input-size", nargs=3, type=int, metavar=("C", "H", "W"))
    parser.add_argument(
        "--num-classes", type=int, help="default: 1000 for the ImageNet families, else 10"
    )
    parser.add_argument(
        "--weights", metavar="NAME_OR_FILE", help=WEIGHTS_HELP + "; checks they fit the model"
    )
    parser.add_argument("--json", action="store_true")


def summary_text(summary) -> str:
    width = max([22, *(len(layer.name) + 2 for layer in summary.layers)])
    lines = [
        f"{'layer':<{width}}{'type':<20}{'output':>14}{'params':>13}{'connections':>15}"
        f"{'MACs':>15}{'activ. KiB':>12}"
    ]
    for layer in summary.layers:
        shape = "×".join(map(str, layer.output_shape))
        lines.append(f"{layer.name:<{width}}{layer.type:<20}{shape:>14}{layer.trainable_params:>13,}"
                     f"{layer.connections:>15,}{layer.macs:>15,}{layer.activation_bytes / 2**10:>12,.1f}")  # fmt: skip
    total = summary.total
    lines.append("-" * (width + 89))
    lines.append(f"{'total':<{width}}{'depth ' + str(total['depth']):<20}{'':>14}{total['trainable_params']:>13,}"
                 f"{total['connections']:>15,}{total['macs']:>15,}{total['activation_bytes'] / 2**10:>12,.1f}")  # fmt: skip
    lines.append(f"parameters {total['params']:,} ({total['weight_bytes'] / 2**20:.2f} MiB of weights), "
                 f"{total['macs'] / 1e9:.3f} GMACs, activations {total['activation_bytes'] / 2**20:,.2f} MiB "
                 f"per image, depth {total['depth']} weight layers")  # fmt: skip
    return "\n".join(lines)


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


def _meta_model(name: str, num_classes: int, in_channels: int):
    import torch

    from convnet.models import get_model

    try:
        with torch.device("meta"):
            return get_model(name, num_classes=num_classes, in_channels=in_channels)
    except (RuntimeError, NotImplementedError):  # e.g. data-dependent initialization
        return get_model(name, num_classes=num_classes, in_channels=in_channels)


def run_summary(args: argparse.Namespace) -> int:
    from convnet.analysis.summary import LENET5_SOURCES, matching_sources, summarize
    from convnet.models import get_model_spec

    spec = get_model_spec(args.model)
    size = tuple(args.input_size) if args.input_size else spec.input_size
    if min(size) < 1:
        raise UserError(f"--input-size must be positive, not {' '.join(map(str, size))}.")
    if args.weights:
        from convnet.engine.runs import load_weights_argument

        if size[0] != spec.input_size[0]:
            raise UserError("--weights fit the model's own input channels; drop --input-size C.")
        model = load_weights_argument(args.model, args.weights).model
    else:
        # Shapes and counts need no arithmetic: build on the meta device (no memory, no
        # initialization) where the model allows it, so VGG-19 at 224×224 takes a moment.
        from convnet.models.imagenet import CHALLENGE_ENTRIES

        classes = args.num_classes or (1000 if args.model in CHALLENGE_ENTRIES else 10)
        model = _meta_model(args.model, classes, size[0])
    try:
        summary = summarize(model, size, args.model)
    except RuntimeError as error:
        raise UserError(
            f"{args.model} cannot take input of size {size}: {str(error).splitlines()[0]}"
        ) from None
    text = (
        f"{args.model}: {spec.description}\ninput {size[0]}×{size[1]}×{size[2]}\n\n"
        + summary_text(summary)
    )
    if spec.family == "LeNet":
        matches = matching_sources(summary)
        text += "\n\n" + "\n".join(
            f"{'matches' if ok else 'differs from'} {source}: {LENET5_SOURCES[source]['trainable_params']:,} "
            f"trainable parameters, {LENET5_SOURCES[source]['connections']:,} connections"
            for source, ok in matches.items()
        )
        text += ("\nNote: the lecture's 'about 14,000 parameters and 187,000 connections' does not match the "
                 "published LeNet-5 (60,000 and 340,908, LeCun et al. 1998, §II-B).")  # fmt: skip
    from convnet.models.imagenet import CHALLENGE_ENTRIES

    if args.model in CHALLENGE_ENTRIES and size == spec.input_size:
        text += "\n\n" + _published_text(args.model, summary)
    emit(args, summary.to_dict(), text)
    return 0


# --- train / evaluate / predict / demo ---------------------------------------------------


def configure_train(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", nargs="?", help="a registered model (see 'convnet summary --help')"
    )
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--no-augment", dest="augment", action="store_false", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS")
    parser.add_argument(
        "--train-subset", type=int, metavar="N", help="train on the first N images only"
    )
    parser.add_argument("--out", metavar="RUN_DIR")
    parser.add_argument("--resume", metavar="RUN_DIR")
    parser.add_argument("--json", action="store_true")
    from convnet.commands.folder_train import add_folder_arguments

    add_folder_arguments(parser)  # --data DIR and its options (image folders, torchrun)


def _finish_run(run_dir: Path, args: argparse.Namespace, train_result: dict) -> dict:
    """Evaluate the saved weights of a run and write its report; return the JSON result."""
    from convnet.engine.runs import evaluate_loaded, load_run
    from convnet.report.run_report import write_run_report

    loaded = load_run(run_dir)
    evaluation = evaluate_loaded(
        loaded, loaded.config.dataset, data_dir(args), args.device, args.precision
    )
    report = write_run_report(run_dir, loaded, evaluation)
    result = {**train_result, "report": str(report)}
    result.pop("confusion_matrix", None)
    return result


def _result_text(result: dict) -> str:
    lines = [f"{result['model']} on {result['dataset']}: test error {result['top1_error']:.2%} "
             f"(top-5 {result['top5_error']:.2%}) on {result['num_examples']:,} images"]  # fmt: skip
    if "train_seconds" in result:
        lines.append(f"trained {result['epochs']} epochs in {result['train_seconds']:.1f} s "
                     f"({result['images_per_second']:,.0f} images/s, {result['precision']} on {result['device']})")  # fmt: skip
    lines.append(
        "easiest: " + ", ".join(f"{r['name']} {r['accuracy']:.2%}" for r in result["easiest"])
    )
    lines.append(
        "hardest: " + ", ".join(f"{r['name']} {r['accuracy']:.2%}" for r in result["hardest"])
    )
    if result.get("confusions"):
        lines.append("most confused: " + ", ".join(
            f"{c['true']}→{c['predicted']} ×{c['count']}" for c in result["confusions"]))  # fmt: skip
    if "run_dir" in result:
        lines.append(f"run directory: {result['run_dir']}")
    if "report" in result:
        lines.append(f"report: {result['report']}")
    return "\n".join(lines)


def run_train(args: argparse.Namespace) -> int:
    from convnet.commands.folder_train import run_folder_train, wants_folder_training
    from convnet.engine.train import TrainConfig, fit

    if wants_folder_training(args):
        return run_folder_train(args)
    if args.resume is None and args.model is None:
        raise UserError(
            "Name a model to train (e.g. 'convnet train lenet5') or give --resume RUN_DIR."
        )
    config = TrainConfig(
        model=args.model or "lenet5", dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay, augment=args.augment,
        seed=args.seed, device=args.device, precision=args.precision, out=args.out,
        checkpoint_every=args.checkpoint_every, train_subset=args.train_subset,
    )  # fmt: skip
    result = fit(config, Path(args.resume) if args.resume else None, log=log)
    result = _finish_run(Path(result["run_dir"]), args, result)
    emit(args, result, _result_text(result))
    return 0


def _load_for_inference(args: argparse.Namespace):
    from convnet.engine.runs import load_run, load_weights_argument

    if args.weights:
        return load_weights_argument(args.target, args.weights, getattr(args, "dataset", None))
    return load_run(Path(args.target))


WEIGHTS_HELP = (
    "with MODEL: torchvision weights by name (e.g. IMAGENET1K_V1, read from the torch hub "
    "cache, never downloaded) or a weights file (safetensors or PyTorch state_dict)"
)


def configure_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN_DIR|MODEL")
    parser.add_argument("--weights", metavar="NAME_OR_FILE", help=WEIGHTS_HELP)
    parser.add_argument("--dataset")
    parser.add_argument("--data-dir")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", action="store_true")
    from convnet.commands.folder_eval import add_folder_arguments

    add_folder_arguments(parser)  # --data DIR: image folders and ILSVRC2012


def run_evaluate(args: argparse.Namespace) -> int:
    from convnet.engine.runs import evaluate_loaded

    if args.data:
        from convnet.commands.folder_eval import run_folder_evaluate

        return run_folder_evaluate(args)
    loaded = _load_for_inference(args)
    dataset = args.dataset or (loaded.config.dataset if loaded.config else "mnist")
    evaluation = evaluate_loaded(loaded, dataset, data_dir(args), args.device, args.precision)
    result = dict(evaluation.result)
    result.pop("confusion_matrix")
    emit(args, result, _result_text(result))
    return 0


def configure_predict(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="RUN_DIR|MODEL")
    parser.add_argument("images", nargs="+", metavar="IMAGE")
    parser.add_argument("--weights", metavar="NAME_OR_FILE", help=WEIGHTS_HELP)
    parser.add_argument("--top", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto", help="auto|fp32|bf16")
    parser.add_argument("--json", action="store_true")


def run_predict(args: argparse.Namespace) -> int:
    import torch

    from convnet.data.images import load_digit, load_photo
    from convnet.data.transforms import to_model_input
    from convnet.engine.device import resolve_device, resolve_precision
    from convnet.engine.evaluate import predict_logits

    if args.top < 1:
        raise UserError(f"--top must be at least 1, not {args.top}.")
    loaded = _load_for_inference(args)
    size = loaded.spec.input_size
    if loaded.photos:  # ImageNet weights: the photo itself, resized and centre-cropped
        inputs = torch.stack([load_photo(path, size) for path in args.images])
    else:  # a digit model: prepared the way MNIST was
        inputs = to_model_input(torch.stack([load_digit(path) for path in args.images]), size)
    device = resolve_device(args.device)
    logits = predict_logits(
        loaded.model.to(device), inputs, loaded.spec.normalization, device,
        resolve_precision(args.precision, device),
    )  # fmt: skip
    probabilities = logits.softmax(dim=1)
    top = probabilities.topk(min(args.top, probabilities.shape[1]), dim=1)
    results = [
        {"image": path, "top": [
            {"index": int(i), "name": loaded.class_names[int(i)], "probability": round(float(p), 6)}
            for p, i in zip(top.values[row], top.indices[row], strict=True)
        ]}
        for row, path in enumerate(args.images)
    ]  # fmt: skip
    text = "\n".join(
        f"{item['image']}: " + ", ".join(f"{t['name']} {t['probability']:.1%}" for t in item["top"])
        for item in results
    )
    emit(args, results, text)
    return 0


def configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, help="fewer epochs for a quicker look")
    parser.add_argument("--out", metavar="RUN_DIR", default="runs/demo")
    parser.add_argument("--data-dir")
    parser.add_argument("--json", action="store_true")


def run_demo(args: argparse.Namespace) -> int:
    from convnet.data.datasets import fetch_dataset
    from convnet.engine.train import TrainConfig, fit

    fetch_dataset("mnist", data_dir(args), log=log)
    log(f"Training lenet5 on MNIST into {args.out} …")
    config = TrainConfig(
        model="lenet5", dataset="mnist", data_dir=args.data_dir, epochs=args.epochs, out=args.out
    )
    args.device, args.precision = config.device, config.precision
    result = _finish_run(Path(args.out), args, fit(config, log=log))
    emit(
        args,
        result,
        _result_text(result) + f"\n\nOpen {result['report']} in a browser to see the report.",
    )
    return 0


COMMANDS: dict[str, Command] = {
    "data": Command("list and fetch data sets", configure_data, run_data),
    "summary": Command(
        "per-layer parameters, connections, MACs and depth of a model",
        configure_summary,
        run_summary,
    ),
    "train": Command(
        "train a model; writes a run directory with weights and a report",
        configure_train,
        run_train,
    ),
    "evaluate": Command(
        "top-1/top-5 error, per-class accuracy, confusions",
        configure_evaluate,
        run_evaluate,
    ),
    "predict": Command(
        "classify image files (PNG, JPEG, …) the way MNIST was prepared",
        configure_predict,
        run_predict,
    ),
    "demo": Command(
        "fetch MNIST, train LeNet-5, evaluate it and write its report",
        configure_demo,
        run_demo,
    ),
}
