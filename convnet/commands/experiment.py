"""`convnet experiment shift|invariance|cost` and `convnet report lecture`: the lecture's
claims measured on this machine (issue 4).

Each experiment is one entry of EXPERIMENTS (name -> Command), so another experiment
(e.g. depth evolution) is one more entry rather than another branch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.catalog import DISTORTION_NAMES, INVARIANCE_SEEDS, INVARIANCE_VARIANTS
from convnet.commands.common import (
    DATA_DIR_HELP,
    JSON_HELP,
    Command,
    add_device_arguments,
    add_lang_argument,
    add_threads_argument,
    apply_threads,
    check_counts,
    emit,
    log,
    settings_from_args,
)
from convnet.commands.evolution import EVOLUTION
from convnet.i18n import check_language
from convnet.wording import counted

# --- shift -----------------------------------------------------------------------------


def configure_shift(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index", type=int, default=0, help="MNIST test digit")
    parser.add_argument("--pixels", type=int, default=2, help="shift left by this many pixels")
    parser.add_argument("--threshold", type=float, default=0.5, help="binarize at this grey level")
    parser.add_argument(
        "--figure",
        default="runs/experiments/shift.png",
        metavar="FILE",
        help="where to draw the figure (PNG)",
    )
    add_threads_argument(parser)
    add_lang_argument(parser, "the figure")
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def run_shift(args: argparse.Namespace) -> int:
    from convnet.experiments.shift import run_shift as measure
    from convnet.report.claims_plots import shift_figure

    lang = check_language(args.lang)
    apply_threads(args)
    data_dir = Path(args.data_dir) if args.data_dir else None
    result = measure(args.index, args.pixels, args.threshold, data_dir)
    figure = shift_figure(result, Path(args.figure), lang=lang)
    document = {**result.to_dict(), "figure": str(figure)}
    stats, near = result.test_set, result.closest_to_lecture
    text = (
        f"MNIST test digit #{result.index} ({result.label}), binarized at {result.threshold}, "
        f"shifted {result.pixels} px left in the {result.inputs}-input field:\n"
        f"  {result.changed} inputs change: {result.black_to_white} black→white, "
        f"{result.white_to_black} white→black ({result.ink_pixels} ink pixels)\n"
        f"  lecture: 154 inputs change (77 black→white, 77 white→black)\n"
        f"all {stats['count']:,} test digits: mean {stats['mean']:.1f} ± {stats['std']:.1f} "
        f"changed inputs (median {stats['median']:.0f}, min {stats['min']}, max {stats['max']})\n"
        f"the test digit closest to the lecture's count: #{near['index']} ({near['label']}), "
        f"{near['changed']} ({near['black_to_white']} + {near['white_to_black']})\n"
        f"figure: {figure}"
    )
    emit(args, document, text)
    return 0


# --- invariance ------------------------------------------------------------------------


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def configure_invariance(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="lenet5,mlp", help="models to compare, comma-separated")
    parser.add_argument(
        "--variants",
        default=",".join(INVARIANCE_VARIANTS),
        help="which trainings, comma-separated",
    )
    parser.add_argument(
        "--distortions", default=",".join(DISTORTION_NAMES), help="which sweeps, comma-separated"
    )
    parser.add_argument("--epochs", type=int, help="training epochs (default: each model's)")
    parser.add_argument(
        "--train-subset", type=int, metavar="N", help="train on the first N images (default: all)"
    )
    parser.add_argument(
        "--test-subset",
        type=int,
        metavar="N",
        help="measure on the first N test images (default: all)",
    )
    parser.add_argument("--runs-dir", default="runs/experiments", help="cache of trained runs")
    parser.add_argument("--reuse-only", action="store_true", help="never train; use cached runs")
    add_threads_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the trainings")
    add_seeds_argument(parser)
    add_device_arguments(parser)
    parser.add_argument(
        "--figure",
        metavar="FILE",
        help="where to draw the curves (PNG; default: RUNS_DIR/invariance.png)",
    )
    add_lang_argument(parser, "the figure's language")
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def add_seeds_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--seeds",
        type=int,
        default=INVARIANCE_SEEDS,
        metavar="N",
        help="seeds of each pooling variant (max, average, stride-2 convolution; claim 3)",
    )


def pooling_table(result) -> str:
    """Claim 3 over the seeds: each pooling kind's accuracy, mean (min–max)."""
    pooling = result.to_dict()["pooling"]
    if not pooling:
        return ""
    measures = ["clean", *(curve.distortion for curve in result.curves)]
    lines = [
        f"\npooling over {counted(max(len(v['clean']) for v in result.pooling().values()), 'seed')}, "
        "accuracy mean (min–max):",
        f"  {'':<24}" + "".join(f"{name:>22}" for name in measures),
    ]
    for kind, by_measure in pooling.items():
        cells = "".join(
            f"{by_measure[name]['mean']:>9.2%} ({by_measure[name]['min']:.1%}–"
            f"{by_measure[name]['max']:.1%})".rjust(22)
            for name in measures
        )
        lines.append(f"  {POOLING_NAMES[kind]:<24}{cells}")
    return "\n".join(lines)


POOLING_NAMES = {"plain": "max pooling", "average": "average pooling", "ablation": "stride-2 conv"}


def invariance_table(result) -> str:
    """Mean accuracy over each sweep, one row per variant, plus the augmentation gaps."""
    names = [curve.distortion for curve in result.curves]
    lines = [f"{'variant':<38}{'clean':>8}" + "".join(f"{name:>13}" for name in names)]
    for variant in result.variants:
        lines.append(
            f"{variant.label:<38}{result.clean_accuracy(variant.label):>8.2%}"
            + "".join(f"{result.mean_accuracy(name, variant.label):>13.2%}" for name in names)
        )
    gaps = result.gaps()
    if gaps:
        cnn, mlp = result.pair
        lines.append(f"\n{cnn} minus {mlp}, mean accuracy over each sweep (points):")
        for row in gaps:
            closed = row.get("closed")
            lines.append(
                f"  {row['distortion']:<12} plain {100 * row['plain_gap']:+6.1f}"
                + (
                    f"   both augmented {100 * row['augmented_gap']:+6.1f}"
                    f"   augmentation closes {closed:.0%} of the gap"
                    if closed is not None
                    else ""
                )
            )
    return "\n".join(lines) + pooling_table(result)


def run_invariance(args: argparse.Namespace) -> int:
    from convnet.experiments.invariance import InvarianceSettings
    from convnet.experiments.invariance import run_invariance as measure
    from convnet.report.claims_plots import invariance_curves

    check_counts(args, "epochs", "train_subset", "test_subset", "seeds")
    lang = check_language(args.lang)
    settings = settings_from_args(
        InvarianceSettings,
        args,
        models=_names(args.models),
        variants=_names(args.variants),
        distortions=_names(args.distortions),
    )
    result = measure(settings, log=log)
    figure = invariance_curves(
        result, Path(args.figure or Path(args.runs_dir) / "invariance.png"), lang=lang
    )
    document = {**result.to_dict(), "figure": str(figure)}
    trained = "".join(
        f"\n  {v.label:<36} {'reused' if v.reused else 'trained'} {v.run_dir}"
        for v in result.variants
    )
    text = (
        f"accuracy on {result.num_test_images:,} test digits, mean over each sweep:\n"
        f"{invariance_table(result)}\nruns:{trained}\nfigure: {figure}"
    )
    emit(args, document, text)
    return 0


# --- cost ------------------------------------------------------------------------------


def configure_cost(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--models", default="lenet5,mlp_60k", help="models to measure, comma-separated"
    )
    parser.add_argument(
        "--device", default="cpu", help="where to time them: cpu, cuda, mps or auto"
    )
    parser.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 or auto")
    parser.add_argument("--repeats", type=int, default=200, help="timed calls at batch 1")
    parser.add_argument("--repeats-large", type=int, default=30, help="timed calls at batch 256")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads while timing; 0: PyTorch's own count",
    )
    parser.add_argument(
        "--figure",
        default="runs/experiments/cost.png",
        metavar="FILE",
        help="where to draw the bars (PNG)",
    )
    add_lang_argument(parser, "the figure")
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def cost_text(result) -> str:
    lines = [
        f"{'model':<12}{'params':>10}{'weights KiB':>13}{'activ. KiB/img':>16}{'MACs':>12}"
        f"{'infer b1':>11}{'infer b256':>12}{'train b1':>11}{'train b256':>12}   µs per image"
    ]
    settings = [(k, b) for k in ("inference", "training") for b in ("1", "256")]
    for m in result.models:
        times = [m.seconds_per_image[k][b] * 1e6 for k, b in settings]
        lines.append(
            f"{m.model:<12}{m.params:>10,}{m.weight_bytes / 1024:>13,.1f}"
            f"{m.activation_bytes / 1024:>16,.1f}{m.macs:>12,}"
            + "".join(f"{t:>11,.1f}" if i % 2 == 0 else f"{t:>12,.1f}" for i, t in enumerate(times))
        )
        spreads = [m.time_spread[k][b] for k, b in settings]
        lines.append(
            f"{'  spread':<73}"
            + "".join(f"{s:>11.0%}" if i % 2 == 0 else f"{s:>12.0%}" for i, s in enumerate(spreads))
        )
    lines.append("\nshare of run time by layer type (profiled, mean of the rounds):")
    for m in result.models:
        for kind, batches in m.time_shares.items():
            for batch, shares in batches.items():
                parts = ", ".join(
                    f"{k} {v:.0%}"
                    for k, v in sorted(shares.items(), key=lambda i: -i[1])
                    if v >= 0.005
                )
                spread = 100 * m.share_spread[kind][batch]
                lines.append(
                    f"  {m.model:<10} {kind:<9} batch {batch:<4} {parts} (± {spread:.0f} points)"
                )
    lines.append("\nthe lecture's claims:")
    for claim in result.claims:
        lines.append(
            f"  “{claim['claim']}” — {claim['verdict'].upper()}\n"
            f"    measured ({claim['model']}): "
            f"{claim['measured']}\n    {claim['why']}"
        )
    conditions = result.conditions
    ran = (
        f", the timing thread ran {conditions.cpu_share:.0%} of the wall time"
        if conditions.cpu_share is not None
        else ""
    )
    lines.append(
        f"\n{result.device}, {result.precision}, {counted(result.threads, 'thread')}, {conditions.clock}, "
        f"{conditions.rounds} rounds (spread: (max − min) ÷ median of the rounds' medians); "
        f"load average {conditions.load_before} before, {conditions.load_after} after on "
        f"{conditions.cores} cores{ran}"
    )
    return "\n".join(lines)


def run_cost(args: argparse.Namespace) -> int:
    from convnet.experiments.cost import run_cost as measure
    from convnet.report.claims_plots import cost_bars

    lang = check_language(args.lang)
    result = measure(
        _names(args.models),
        args.device,
        args.precision,
        args.repeats,
        args.repeats_large,
        threads=args.threads,
    )
    figure = cost_bars(result, Path(args.figure), lang=lang)
    emit(
        args, {**result.to_dict(), "figure": str(figure)}, cost_text(result) + f"\nfigure: {figure}"
    )
    return 0


EXPERIMENTS: dict[str, Command] = {
    "shift": Command("claim 1: inputs a small shift changes", configure_shift, run_shift),
    "invariance": Command(
        "claims 1, 3, 5: accuracy under shift, rotation, scale, noise, elastic distortion",
        configure_invariance,
        run_invariance,
    ),
    "cost": Command("claim 6: memory, MACs, run time and its split", configure_cost, run_cost),
    "evolution": EVOLUTION,  # claim 8 in miniature (convnet/commands/evolution.py, issue 6)
}


def configure_experiment(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    for name, command in EXPERIMENTS.items():
        command.configure(actions.add_parser(name, help=command.help, description=command.help))


def run_experiment(args: argparse.Namespace) -> int:
    return EXPERIMENTS[args.experiment].run(args)


# --- report lecture --------------------------------------------------------------------


def configure_report(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="report", required=True, metavar="REPORT")
    lecture = actions.add_parser("lecture", help="one page: the lecture's claims 1–8 measured")
    lecture.add_argument(
        "--out",
        default="runs/lecture/lecture.html",
        metavar="FILE",
        help="the page; its figures go in a folder beside it named after it "
        "(lecture.html: lecture_figures/)",
    )
    lecture.add_argument("--epochs", type=int, default=3, help="brief training epochs")
    lecture.add_argument(
        "--train-subset",
        type=int,
        default=0,
        metavar="N",
        help="brief training on the first N images; 0: all 60,000",
    )
    lecture.add_argument(
        "--test-subset",
        type=int,
        default=2_000,
        metavar="N",
        help="sweep the distortions over the first N test images",
    )
    lecture.add_argument(
        "--runs-dir",
        default="runs/experiments",
        help="cache of trained runs, shared with 'experiment invariance'",
    )
    lecture.add_argument("--repeats", type=int, default=50, help="timed calls at batch 1")
    add_seeds_argument(lecture)
    add_threads_argument(lecture)
    lecture.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    add_lang_argument(lecture, "the page, figures included")


def run_report(args: argparse.Namespace) -> int:
    from convnet.report.lecture import LectureSettings, write_lecture_report

    lang = check_language(args.lang)
    check_counts(args, "epochs", "test_subset", "repeats", "seeds")
    settings = LectureSettings(
        epochs=args.epochs,
        train_subset=args.train_subset or None,  # 0: all 60,000
        test_subset=args.test_subset,
        runs_dir=args.runs_dir,
        repeats=args.repeats,
        data_dir=args.data_dir,
        threads=args.threads,
        seeds=args.seeds,
    )
    path = write_lecture_report(Path(args.out), settings, log=log, lang=lang)
    print(path)
    return 0


COMMANDS: dict[str, Command] = {
    "experiment": Command(
        "measure one of the lecture's claims", configure_experiment, run_experiment
    ),
    "report": Command(
        "write a report page (lecture: claims 1–8 measured)", configure_report, run_report
    ),
}
