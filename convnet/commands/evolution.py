"""`convnet experiment evolution`: LeNet → AlexNet → VGG → NiN → GoogLeNet → ResNet in
miniature, trained with one recipe on Fashion-MNIST (issue 6).

`convnet experiment` (convnet/commands/experiment.py) dispatches its `evolution` action to
`configure_evolution` / `run_evolution` here; this module adds no top-level command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.catalog import (
    EVOLUTION_BATCH_SIZE,
    EVOLUTION_EPOCHS,
    EVOLUTION_LR,
    EVOLUTION_MODELS,
    EVOLUTION_WEIGHT_DECAY,
)
from convnet.commands.common import (
    DATA_DIR_HELP,
    JSON_HELP,
    Command,
    add_device_arguments,
    add_lang_argument,
    add_threads_argument,
    check_counts,
    emit,
    log,
    settings_from_args,
)
from convnet.wording import counted

COMMANDS: dict[str, Command] = {}  # nothing top-level: see EVOLUTION below


def configure_evolution(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default="fashion-mnist", help="a registered data set")
    parser.add_argument(
        "--models", default=",".join(EVOLUTION_MODELS), help="models to train, comma-separated"
    )
    parser.add_argument(
        "--epochs", type=int, default=EVOLUTION_EPOCHS, help="training epochs, the same for all"
    )
    parser.add_argument(
        "--batch-size", type=int, default=EVOLUTION_BATCH_SIZE, help="images per step"
    )
    parser.add_argument("--lr", type=float, default=EVOLUTION_LR, help="peak learning rate")
    parser.add_argument(
        "--weight-decay",
        type=float,
        default=EVOLUTION_WEIGHT_DECAY,
        help="L2 penalty on the weights",
    )
    parser.add_argument(
        "--no-augment", dest="augment", action="store_false", help="train without augmentation"
    )
    parser.add_argument(
        "--train-subset", type=int, metavar="N", help="train on the first N images (default: all)"
    )
    parser.add_argument(
        "--test-subset", type=int, metavar="N", help="test on the first N images (default: all)"
    )
    parser.add_argument("--runs-dir", default="runs/evolution", help="cache of trained runs")
    parser.add_argument("--reuse-only", action="store_true", help="never train; use cached runs")
    add_threads_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the trainings")
    add_device_arguments(parser)
    parser.add_argument(
        "--figure",
        metavar="FILE",
        help="where to draw the figure (PNG; default: RUNS_DIR/evolution.png)",
    )
    add_lang_argument(parser, "the figure")
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


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
        over += "" if result.passes(outcome) else " (under the accuracy floor)"
        lines.append(
            f"{outcome.model:<16}{outcome.family:<11}{outcome.year or '':>5}{outcome.depth:>7}"
            f"{outcome.params:>11,}{outcome.macs / 1e6:>8.1f}{outcome.test_accuracy:>10.2%}"
            f"{outcome.train_seconds:>9.0f}{outcome.images_per_second:>8,.0f}   "
            + "; ".join(notes)
            + over
        )
    return "\n".join(lines)


def floor_text(result) -> str:
    """Which models fell short of the accuracy floor, so that no depth line is drawn from
    them (or that the data set has no floor)."""
    floor = result.accuracy_floor
    if floor is None:
        return f"no accuracy floor known for {result.settings['dataset']}: every model is drawn"
    short = result.short_of_floor()
    if not short:
        return f"every model reached the {floor:.0%} accuracy floor: the depth line joins them all"
    named = ", ".join(f"{o.model} {o.test_accuracy:.1%}" for o in short)
    return (
        f"under the {floor:.0%} accuracy floor, so no depth line is drawn through them: {named} "
        "(train longer: more --epochs, no --train-subset)"
    )


def run_evolution(args: argparse.Namespace) -> int:
    from convnet.experiments.evolution import EvolutionSettings
    from convnet.experiments.evolution import run_evolution as measure
    from convnet.i18n import check_language
    from convnet.report.evolution_plots import evolution_figure

    lang = check_language(args.lang)
    check_counts(args, "epochs", "batch_size", "train_subset", "test_subset")
    models = tuple(name.strip() for name in args.models.split(",") if name.strip())
    settings = settings_from_args(EvolutionSettings, args, models=models)
    result = measure(settings, log=log)
    figure = evolution_figure(
        result, Path(args.figure or Path(args.runs_dir) / "evolution.png"), lang=lang
    )
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
        f"{evolution_table(result)}\n{floor_text(result)}\n"
        f"{machine['cpu']}, {counted(machine['torch_threads'], 'thread')} in this call"
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
