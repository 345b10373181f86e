"""`convnet zoo`: AlexNet, VGG, GoogLeNet and ResNet side by side, and the ImageNet chart."""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet.commands.common import (
    JSON_HELP,
    Command,
    add_lang_argument,
    add_threads_argument,
    apply_threads,
    emit,
    log,
)
from convnet.errors import UserError
from convnet.i18n import check_language


def configure_zoo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help=JSON_HELP)
    parser.add_argument(
        "--plot",
        metavar="FILE",
        help="draw the ILSVRC top-5 error by year chart (PNG; default: none)",
    )
    parser.add_argument(
        "--models", nargs="+", metavar="MODEL", help="only these models (default: all of them)"
    )
    parser.add_argument(
        "--no-speed", dest="speed", action="store_false", help="skip the images/s measurement"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed batches per model and precision (median)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="images per timed batch")
    add_threads_argument(parser)
    add_lang_argument(parser, "the chart (--plot)")


def _number(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def zoo_text(rows: list, batch_size: int) -> str:
    fast = next((row.fast_precision for row in rows if row.fast_precision), "fast")
    lines = [
        f"{'model':<11}{'year':>5}{'top-5 %':>9}{'depth':>7}{'params':>14}{'GMACs':>8}"
        f"{'weights MiB':>13}{'fp32 img/s':>12}{f'{fast} img/s':>12}{'speed-up':>10}"
    ]
    for row in rows:
        ratio = (
            row.fast_images_per_second / row.fp32_images_per_second
            if row.fp32_images_per_second
            else None
        )
        lines.append(
            f"{row.name:<11}{row.year:>5}{row.top5_error:>9g}{row.depth:>7}{row.params:>14,}"
            f"{row.macs / 1e9:>8.3f}{row.weight_bytes / 2**20:>13,.1f}"
            f"{_number(row.fp32_images_per_second):>12}{_number(row.fast_images_per_second):>12}"
            f"{_number(ratio, 2) + '×' if ratio else '—':>10}"
        )
    lines.append(
        f"top-5 %: the family's ILSVRC entry (an ensemble, test set); images/s: batch {batch_size}, "
        "random weights, median of the timed batches, on this machine."
    )
    return "\n".join(lines)


def run_zoo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from convnet.analysis.zoo import hardware, zoo_names, zoo_table
    from convnet.models.imagenet import HUMAN_TOP5_ERROR, ILSVRC_WINNERS

    lang = check_language(args.lang)
    names = args.models or zoo_names()
    unknown = [name for name in names if name not in zoo_names()]
    if unknown:
        raise UserError(f"{', '.join(unknown)} not in the zoo; it holds {', '.join(zoo_names())}.")
    if args.repeats < 1 or args.batch_size < 1:
        raise UserError("--repeats and --batch-size must be at least 1.")
    apply_threads(args)
    if args.speed:
        log(
            f"Measuring images/s of {len(names)} models at batch {args.batch_size} "
            "(--no-speed skips this) …"
        )

    def progress(rows):
        return tqdm(rows, desc="images/s", unit="model", leave=False)

    rows = zoo_table(names, args.speed, args.batch_size, args.repeats, progress)
    document = {
        "batch_size": args.batch_size if args.speed else None,
        "hardware": hardware(),
        "models": [row.to_dict() for row in rows],
        "ilsvrc_winners": [
            {
                "year": w.year,
                "network": w.network,
                "depth": w.depth,
                "top5_error": w.top5_error,
                "source": w.source,
            }
            for w in ILSVRC_WINNERS
        ],
        "human_top5_error": HUMAN_TOP5_ERROR,
    }
    text = zoo_text(rows, args.batch_size)
    if args.plot:
        from convnet.report.zoo_chart import ilsvrc_history_chart

        document["plot"] = str(ilsvrc_history_chart(Path(args.plot), lang=lang))
        text += f"\nchart: {document['plot']}"
    emit(args, document, text)
    return 0


COMMANDS: dict[str, Command] = {
    "zoo": Command(
        "AlexNet, VGG, GoogLeNet, ResNet side by side: ILSVRC year and error, depth, "
        "parameters, MACs, memory, images/s here; --plot draws the ImageNet chart",
        configure_zoo,
        run_zoo,
    ),
}
