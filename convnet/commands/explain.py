"""`convnet explain`: where a network looked, as one PNG overlay per image (Captum)."""

from __future__ import annotations

import argparse
from pathlib import Path

from convnet import i18n
from convnet.commands.common import Command, add_lang_argument, emit, log
from convnet.commands.evaluate import WEIGHTS_HELP, load_target
from convnet.engine.preparations import PREPARATION_HELP, PREPARATIONS
from convnet.errors import UserError
from convnet.i18n import check_language
from convnet.i18n import text as message

EXPLAIN_METHODS = ("gradcam", "saliency", "occlusion")  # convnet.analysis.explain.METHODS


def configure_explain(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="RUN_DIR|MODEL",
        help="a run directory, or a registered model name with --weights",
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="PNG, JPEG, … files")
    parser.add_argument("--weights", metavar="NAME_OR_FILE", help=WEIGHTS_HELP)
    parser.add_argument(
        "--method",
        choices=EXPLAIN_METHODS,
        default="gradcam",
        help="gradcam: the last convolution maps' Grad-CAM; saliency: the "
        "input gradient (SmoothGrad); occlusion: the score lost when a patch "
        "is painted over",
    )
    parser.add_argument(
        "--target",
        dest="target_class",
        metavar="CLASS",
        help="the class to explain, by name or index (default: each image's predicted class)",
    )
    parser.add_argument(
        "--layer",
        metavar="NAME",
        help="Grad-CAM's layer, a module name as "
        "in named_modules() (default: the model's own, e.g. features.c3)",
    )
    parser.add_argument(
        "--out", metavar="DIR", default="explanations", help="where the PNG files go"
    )
    parser.add_argument("--preparation", choices=PREPARATIONS, help=PREPARATION_HELP)
    add_lang_argument(parser, "the overlays' titles")
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def class_index(target: str, class_names: tuple[str, ...]) -> int:
    """--target as an index into `class_names`: a class name, else a number; UserError."""
    if target in class_names:
        return class_names.index(target)
    if target.isdigit() and int(target) < len(class_names):
        return int(target)
    shown = ", ".join(class_names[:10]) + (", …" if len(class_names) > 10 else "")
    raise UserError(
        f"--target {target} is neither a class of the model ({shown}) nor an "
        f"index below {len(class_names)}."
    )


def run_explain(args: argparse.Namespace) -> int:
    import torch

    from convnet.analysis.explain import explain, peaks
    from convnet.commands.predict import transform_for
    from convnet.report.explanation_figure import write_overlay
    from convnet.report.figure_fonts import figure_language

    lang, _ = figure_language(check_language(args.lang))  # English where no font has its letters
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the PNG files.")
    loaded = load_target(args)
    size = loaded.input_size
    loaded.prepare_as(args.preparation)
    transform = transform_for(loaded)  # prepared exactly as `convnet predict` prepares them
    pixels = torch.stack([transform(transform.decode(path)) for path in args.images])
    log(loaded.preparation_note)
    target = None
    if args.target_class is not None:
        target = class_index(args.target_class, loaded.class_names)
    if args.layer is not None and args.method != "gradcam":
        raise UserError(f"--layer is Grad-CAM's; --method {args.method} has no layer.")
    if args.layer is not None and args.layer not in dict(loaded.model.named_modules()):
        raise UserError(f"{loaded.name} has no layer named '{args.layer}'.")
    explanation = explain(
        loaded.model,
        pixels,
        loaded.normalization,
        args.method,
        target=target,
        layer=args.layer,
        spec=loaded.spec,
    )
    method = message(lang, f"figure.explain.method.{args.method}")
    if explanation.layer:
        method = message(lang, "figure.explain.on", method=method, layer=explanation.layer)
    results, used = [], set()
    for index, path in enumerate(args.images):
        name = f"{Path(path).stem}-{args.method}.png"
        if name in used:  # two images of the same name from different folders
            name = f"{Path(path).stem}-{index + 1}-{args.method}.png"
        used.add(name)
        predicted = int(explanation.predicted[index])
        probability = float(explanation.probabilities[index])
        explained = int(explanation.targets[index])
        chance = i18n.percent(probability, lang)
        title = f"{loaded.class_names[predicted]} ({chance}) · {method}"
        if explained != predicted:
            title += "\n" + message(
                lang, "figure.explain.explaining", name=loaded.class_names[explained]
            )
        written = write_overlay(
            out / name, pixels[index], explanation.maps[index], title, lang=lang
        )
        results.append(
            {
                "image": path,
                "out": str(written),
                "method": args.method,
                "layer": explanation.layer,
                "predicted": {
                    "index": predicted,
                    "name": loaded.class_names[predicted],
                    "probability": round(probability, 6),
                },
                "target": {"index": explained, "name": loaded.class_names[explained]},
                "peak": [int(value) for value in peaks(explanation.maps[index : index + 1])[0]],
                "input_size": list(size),
                "preparation": loaded.preparation,
            }
        )
    text = "\n".join(
        f"{item['image']}: {item['predicted']['name']} {item['predicted']['probability']:.1%} "
        f"→ {item['out']}"
        for item in results
    )
    emit(args, results, text)
    return 0


COMMANDS: dict[str, Command] = {
    "explain": Command(
        "where the network looked: a heat-map overlay per image (Grad-CAM, saliency, occlusion)",
        configure_explain,
        run_explain,
    ),
}
