"""`convnet experiment evolution`: LeNet → AlexNet → VGG → NiN → GoogLeNet → ResNet in
miniature, trained with one recipe on Fashion-MNIST (issue 6).

`convnet experiment` (convnet/commands/experiment.py) dispatches its `evolution` action to
`configure_evolution` / `run_evolution` here; this module adds no top-level command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.common import (
    Command,
    add_threads_argument,
    check_counts,
    emit,
    log,
    settings_from_args,
)

COMMANDS: dict[str, Command] = {}  # nothing top-level: see EVOLUTION below


def configure_evolution(parser: argparse.ArgumentParser) -> None:
    from convnet.experiments import evolution as defaults

    parser.add_argument("--dataset", default="fashion-mnist", help="default fashion-mnist")
    parser.add_argument(
        "--models",
        default=",".join(defaults.DEFAULT_MODELS),
        help="comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--epochs", type=int, default=defaults.DEFAULT_EPOCHS, help="default %(default)s"
    )
    parser.add_argument(
        "--batch-size", type=int, default=defaults.DEFAULT_BATCH_SIZE, help="default %(default)s"
    )
    parser.add_argument("--lr", type=float, default=defaults.DEFAULT_LR, help="default %(default)s")
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=defaults.DEFAULT_WEIGHT_DECAY,
        help="default %(default)s",
    )
    parser.add_argument(
        "--no-augment", dest="augment", action="store_false", help="train without augmentation"
    )
    parser.add_argument("--train-subset", type=int, metavar="N", help="train on the first N images")
    parser.add_argument("--test-subset", type=int, metavar="N", help="test on the first N images")
    parser.add_argument("--runs-dir", default="runs/evolution", help="cache of trained runs")
    parser.add_argument("--reuse-only", action="store_true", help="never train; use cached runs")
    add_threads_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--figure", metavar="FILE", help="default RUNS_DIR/evolution.png")
    parser.add_argument("--data-dir")
    parser.add_argument("--json", action="store_true")


def evolution_table(result) -> str:
    """One row per model, shallowest first, beside the published accuracies."""
    lines = [
        f"{'model':<16}{'family':<11}{'year':>5}{'depth':>7}{'params':>11}{'MMACs':>8}"
        f"{'test acc':>10}{'train s':>9}{'img/s':>8}   published (Fashion-MNIST)"
    ]
    for outcome in result.by_depth():
        published = outcome.published()
        notes = [
            f"{entry['network']} {entry['accuracy']:.1%} {label} "
            f"({100 * entry['margin']:+.1f} pt{', beaten' if entry['beaten'] else ''})"
            for label, entry in (
                ("d2l, 10 epochs", published.get("d2l_10_epochs")),
                ("benchmark", published.get("benchmark")),
            )
            if entry
        ]
        over = "" if outcome.within_budget else " (over budget)"
        lines.append(
            f"{outcome.model:<16}{outcome.family:<11}{outcome.year or '':>5}{outcome.depth:>7}"
            f"{outcome.params:>11,}{outcome.macs / 1e6:>8.1f}{outcome.test_accuracy:>10.2%}"
            f"{outcome.train_seconds:>9.0f}{outcome.images_per_second:>8,.0f}   "
            + "; ".join(notes)
            + over
        )
    return "\n".join(lines)


def run_evolution(args: argparse.Namespace) -> int:
    from convnet.experiments.evolution import EvolutionSettings
    from convnet.experiments.evolution import run_evolution as measure
    from convnet.report.evolution_plots import evolution_figure

    check_counts(args, "epochs", "batch_size", "train_subset", "test_subset")
    models = tuple(name.strip() for name in args.models.split(",") if name.strip())
    settings = settings_from_args(EvolutionSettings, args, models=models)
    result = measure(settings, log=log)
    figure = evolution_figure(result, Path(args.figure or Path(args.runs_dir) / "evolution.png"))
    document = {**result.to_dict(), "figure": str(figure)}
    machine = result.hardware
    reused = all(outcome.reused for outcome in result.outcomes)
    text = (
        f"{result.settings['dataset']}: {result.num_train_images:,} training, "
        f"{result.num_test_images:,} test images; one recipe for all: {settings.epochs} "
        f"epoch{'s' if settings.epochs != 1 else ''}, "
        f"batch {settings.batch_size}, lr {settings.lr} (SGD Nesterov, warm-up + cosine), "
        f"weight decay {settings.weight_decay}, "
        f"augmentation {'on' if settings.augment else 'off'}\n"
        f"{evolution_table(result)}\n"
        f"{machine['cpu']}, {machine['torch_threads']} thread(s) in this call"
        f"{' (every run reused from the cache)' if reused else ''}; budget "
        f"{result.to_dict()['budget_seconds']:.0f} s of training per model\n"
        f"runs: {settings.runs_dir}\nfigure: {figure}"
    )
    emit(args, document, text)
    return 0


EVOLUTION = Command(
    "claim 8 in miniature: LeNet → AlexNet → VGG → NiN → GoogLeNet → ResNet, one recipe",
    configure_evolution,
    run_evolution,
)
