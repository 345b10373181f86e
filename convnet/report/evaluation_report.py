"""The page of `convnet evaluate --data DIR --report OUT`: scores, the lecture's "easy
classes / hard classes" slide with a few images of each, confusions and skipped files.

Thumbnails are embedded in the page (base64 JPEG), so it is one file that can be moved or
mailed; the per-class figure sits beside it in figures/.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from convnet.data.folders import DECODE_ERRORS, decode_image
from convnet.engine.checkpoint import atomic_write_text
from convnet.engine.folder_eval import FolderEvaluation
from convnet.report import plots
from convnet.report.run_report import STYLE, _table

REPORT_FILE = "report.html"
FIGURES = "figures"
THUMBNAIL = 112  # pixels on the longer side
PER_CLASS_BARS = 40  # above this many classes, a sorted curve instead of one bar per class
EXTRA_STYLE = """
.classes{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:1em}
.class{background:#f4f6f8;border-radius:8px;padding:.6em} .class h3{margin:.1em 0 .4em;font-size:1em}
figure{display:inline-block;margin:2px;text-align:center;font-size:.72em;max-width:116px}
figure img{display:block;border-radius:3px} .wrong{color:#b3262e}
"""


def _thumbnail(path: Path) -> str | None:
    """A data: URI of a small JPEG of `path`, or None if it cannot be decoded."""
    try:
        image = decode_image(path)
    except DECODE_ERRORS:
        return None
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _class_examples(evaluation: FolderEvaluation, index: int, count: int) -> list[tuple[Path, int]]:
    """Up to `count` (image, predicted class) of class `index`: mistakes first (they show why
    a class is hard), then correct ones, each in file order."""
    predictions = evaluation.logits.argmax(dim=1)
    mine = (evaluation.labels == index).nonzero().flatten().tolist()
    mine.sort(key=lambda row: (int(predictions[row]) == index, int(evaluation.indices[row])))
    samples = evaluation.collection.samples
    return [
        (samples[int(evaluation.indices[row])][0], int(predictions[row])) for row in mine[:count]
    ]


def _class_cards(
    evaluation: FolderEvaluation, rows: list[dict], names: list[str], count: int
) -> str:
    cards = []
    for row in rows:
        figures = []
        for path, predicted in _class_examples(evaluation, row["index"], count):
            uri = _thumbnail(path)
            if uri is None:
                continue
            wrong = predicted != row["index"]
            caption = f"→ {names[predicted]}" if wrong else "correct"
            figures.append(
                f"<figure><img src='{uri}' alt='{html.escape(path.name)}' "
                f"title='{html.escape(path.name)}'><figcaption class='{'wrong' if wrong else ''}'>"
                f"{html.escape(caption)}</figcaption></figure>"
            )
        cards.append(
            f"<div class='class'><h3>{html.escape(row['name'])} — {row['accuracy']:.1%} "
            f"<small>({row['count']} images)</small></h3>{''.join(figures)}</div>"
        )
    return f"<div class='classes'>{''.join(cards)}</div>"


def _sorted_accuracy_figure(per_class: list[dict], path: Path) -> Path:
    """Per-class accuracy from the easiest to the hardest class (ImageNet: 1,000 of them)."""
    accuracy = sorted((100 * row["accuracy"] for row in per_class if row["accuracy"] is not None),
                      reverse=True)  # fmt: skip
    figure, axis = plt.subplots(figsize=(8, 3.4))
    axis.plot(np.arange(1, len(accuracy) + 1), accuracy, color="#2c6e9b")
    axis.set(xlabel="class rank (easiest first)", ylabel="accuracy (%)", ylim=(0, 100.5),
             title=f"Per-class accuracy of {len(accuracy)} classes, sorted")  # fmt: skip
    axis.grid(alpha=0.3)
    return plots.save_figure(figure, path)


def write_evaluation_report(
    out_dir: Path, result: dict, evaluation: FolderEvaluation, images_per_class: int = 4
) -> Path:
    """Write OUT/report.html (and OUT/figures/per_class.png); return the page's path."""
    out_dir = Path(out_dir)
    names = [row["name"] for row in result["per_class"]]
    figure = out_dir / FIGURES / "per_class.png"
    if len(names) <= PER_CLASS_BARS:
        plots.per_class_figure(result["per_class"], result["easiest"], result["hardest"], figure)
    else:
        _sorted_accuracy_figure(result["per_class"], figure)
    cards = [
        ("top-1 error", f"{result['top1_error']:.2%}"),
        ("top-5 error", f"{result['top5_error']:.2%}"),
        ("images", f"{result['num_examples']:,}"),
        ("images/s", f"{result['images_per_second']:,.1f}"),
        ("skipped", f"{result['num_skipped']:,}"),
    ]
    pre = result["preprocessing"]
    parts = [
        f"<h1>{html.escape(result['model'])} on {html.escape(Path(result['dataset']).name)}</h1>",
        f"<p class='lead'>weights {html.escape(result['weights'])}; {html.escape(result['dataset'])} "
        f"({html.escape(result['layout'])}, {html.escape(result['split'])} split); resize "
        f"{pre['resize']}, centre crop {pre['crop']} ({html.escape(pre['interpolation'])}); "
        f"{html.escape(result['precision'])} on {html.escape(result['device'])}.</p>",
        "<div class='cards'>" + "".join(
            f"<div class='card'><div>{k}</div><div class='big'>{v}</div></div>" for k, v in cards
        ) + "</div>",
        f"<h2>Per-class accuracy</h2><img src='{FIGURES}/per_class.png' alt='per-class accuracy'>",
        "<h2>Easy classes</h2>",
        _class_cards(evaluation, result["easiest"], names, images_per_class),
        "<h2>Hard classes</h2><p>Mistakes first, with the class the model chose.</p>",
        _class_cards(evaluation, result["hardest"], names, images_per_class),
    ]  # fmt: skip
    if result["confusions"]:
        parts.append("<h2>Most frequent confusions</h2>" + _table(
            ["true class", "predicted", "times"],
            [[c["true"], c["predicted"], c["count"]] for c in result["confusions"]],
        ))  # fmt: skip
    if result["skipped"]:
        parts.append(f"<h2>Skipped files ({result['num_skipped']})</h2>" + _table(
            ["file", "reason"], [[s["file"], s["reason"]] for s in result["skipped"]]
        ))  # fmt: skip
    title = html.escape(f"{result['model']} evaluation")
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{STYLE}{EXTRA_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    path = out_dir / REPORT_FILE
    atomic_write_text(path, page)
    return path
