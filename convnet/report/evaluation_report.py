"""The page of `convnet evaluate --data DIR --report OUT`: scores, the lecture's "easy
classes / hard classes" slide with a few images of each (only classes that stand apart), the
confusion matrix, the most frequent confusions and skipped files, in English or Korean
(`lang`: the catalog's `report.*` messages).

Thumbnails are embedded in the page (base64 JPEG), so it is one file that can be moved or
mailed; the per-class figure sits beside it in figures/.
"""

from __future__ import annotations

import base64
import html
import io
from functools import partial
from pathlib import Path

from convnet import i18n
from convnet.data.preparation import DECODE_ERRORS, decode_image
from convnet.engine.evaluate import Evaluation
from convnet.files import atomic_write_text
from convnet.report import plots
from convnet.report.plots import report_words, split_name
from convnet.report.run_report import STYLE, _table, apart_rule

REPORT_FILE = "report.html"
FIGURES = "figures"
THUMBNAIL = 112  # pixels on the longer side
EXTRA_STYLE = """
.classes{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:1em}
.class{background:#f4f6f8;border-radius:8px;padding:.6em} .class h3{margin:.1em 0 .4em;font-size:1em}
figure{display:inline-block;margin:2px;text-align:center;font-size:.72em;max-width:116px}
figure img{display:block;border-radius:3px} .wrong{color:#b3262e}
"""


def _thumbnail(evaluation: Evaluation, index: int) -> str | None:
    """A data: URI of a small JPEG of held-out image `index`, or None if it cannot be decoded."""
    source = evaluation.source
    if hasattr(source, "eval_path"):  # a file: its own pixels, not the model's crop
        try:
            image = decode_image(source.eval_path(index))
        except DECODE_ERRORS:
            return None
    else:
        from torchvision.transforms.functional import to_pil_image

        image = to_pil_image(source.eval_image(index)).convert("RGB")
        image = image.resize((THUMBNAIL // 2, THUMBNAIL // 2))
    image.thumbnail((THUMBNAIL, THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _class_examples(evaluation: Evaluation, index: int, count: int) -> list[tuple[int, int]]:
    """Up to `count` (image, predicted class) of class `index`: mistakes first (they show why
    a class is hard), then correct ones, each in file order."""
    predictions = evaluation.logits.argmax(dim=1)
    mine = (evaluation.labels == index).nonzero().flatten().tolist()
    mine.sort(key=lambda row: (int(predictions[row]) == index, int(evaluation.indices[row])))
    return [(int(evaluation.indices[row]), int(predictions[row])) for row in mine[:count]]


def _label(evaluation: Evaluation, index: int) -> str:
    source = evaluation.source
    return source.eval_path(index).name if hasattr(source, "eval_path") else f"#{index}"


def _class_cards(
    evaluation: Evaluation,
    rows: list[dict],
    names: list[str],
    count: int,
    kind: str,
    lang: str = "en",
) -> str:
    if not rows:
        rule = html.escape(apart_rule(lang))
        return f"<p>{report_words(lang, f'evaluation.none_{kind}', rule=rule)}</p>"
    cards = []
    for row in rows:
        figures = []
        for image_index, predicted in _class_examples(evaluation, row["index"], count):
            uri = _thumbnail(evaluation, image_index)
            if uri is None:
                continue
            wrong = predicted != row["index"]
            caption = f"→ {names[predicted]}" if wrong else report_words(lang, "evaluation.correct")
            figures.append(
                f"<figure><img src='{uri}' alt='image {image_index}' "
                f"title='{html.escape(_label(evaluation, image_index))}'><figcaption class='{'wrong' if wrong else ''}'>"
                f"{html.escape(caption)}</figcaption></figure>"
            )
        heading = report_words(
            lang,
            "evaluation.class",
            name=html.escape(row["name"]),
            accuracy=i18n.percent(row["accuracy"], lang),
            count=row["count"],
        )
        cards.append(f"<div class='class'><h3>{heading}</h3>{''.join(figures)}</div>")
    return f"<div class='classes'>{''.join(cards)}</div>"


def _words(lang: str, key: str, **values: object) -> str:
    """The catalog's `report.evaluation.<key>` in `lang`."""
    return report_words(lang, f"evaluation.{key}", **values)


def write_evaluation_report(
    out_dir: Path,
    result: dict,
    evaluation: Evaluation,
    images_per_class: int = 4,
    note: str = "",
    lang: str = "en",
) -> Path:
    """Write OUT/report.html (and OUT/figures/per_class.png, OUT/figures/confusion.png) in
    `lang`; return the page's path. `note` (e.g. "on the first 500 val images") goes into
    the figures' titles when only part of the images was scored."""

    words = partial(_words, lang)
    out_dir = Path(out_dir)
    names = [row["name"] for row in result["per_class"]]
    plots.class_accuracy_figure(result, out_dir / FIGURES / "per_class.png", note, lang=lang)
    plots.confusion_figure(
        result["confusion_matrix"],
        names,
        out_dir / FIGURES / "confusion.png",
        result["split"],
        note,
        lang=lang,
    )
    parts = [
        *_evaluation_header(result, lang),
        f"<h2>{words('per_class')}</h2>"
        f"<img src='{FIGURES}/per_class.png' alt='{words('per_class')}'>",
        f"<h2>{words('confusion')}</h2>"
        + (
            f"<p>{words('confused_some', size=plots.CONFUSION_CLASSES, total=len(names))}</p>"
            if len(names) > plots.CONFUSION_CLASSES
            else ""
        )
        + f"<img src='{FIGURES}/confusion.png' alt='{words('confusion')}'>",
        f"<h2>{words('easy')}</h2>",
        _class_cards(evaluation, result["easiest"], names, images_per_class, "easy", lang),
        f"<h2>{words('hard')}</h2><p>{words('hard_note')}</p>",
        _class_cards(evaluation, result["hardest"], names, images_per_class, "hard", lang),
    ]
    if result["confusions"]:
        parts.append(
            f"<h2>{words('confusions')}</h2>"
            + _table(
                [words("true_class"), words("predicted"), words("times")],
                [[c["true"], c["predicted"], c["count"]] for c in result["confusions"]],
            )
        )
    if result["skipped"]:
        parts.append(
            f"<h2>{report_words(lang, 'skipped', count=result['num_skipped'])}</h2>"
            + _table(
                [report_words(lang, "file"), report_words(lang, "reason")],
                [[s["file"], s["reason"]] for s in result["skipped"]],
            )
        )
    title = html.escape(words("title", model=result["model"]))
    page = (
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'><title>{title}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{STYLE}{EXTRA_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    path = out_dir / REPORT_FILE
    atomic_write_text(path, page)
    return path


def _evaluation_header(result: dict, lang: str) -> list[str]:
    """The heading, the lead (weights, data, how the images were prepared, precision,
    device) and the cards (errors, images, images/s, files skipped)."""

    words = partial(_words, lang)
    split = split_name(result["split"], lang)
    cards = [
        (words("top1"), i18n.percent(result["top1_error"], lang, 2)),
        (words("top5"), i18n.percent(result["top5_error"], lang, 2)),
        (words("images"), i18n.number(result["num_examples"], lang)),
        (words("images_per_second"), i18n.number(result["eval_images_per_second"], lang, 1)),
        (words("skipped_card"), i18n.number(result["num_skipped"], lang)),
    ]
    pre = result.get("preprocessing")
    preparation = (
        words(
            "prepared",
            layout=html.escape(result["layout"]),
            split=html.escape(split),
            resize=pre["resize"],
            crop=pre["crop"],
            interpolation=html.escape(pre["interpolation"]),
        )
        if pre
        else words("in_memory", split=html.escape(split))
    )
    lead = words(
        "lead",
        weights=html.escape(result["weights"]),
        dataset=html.escape(result["dataset"]),
        preparation=preparation,
        precision=html.escape(result["precision"]),
        device=html.escape(result["device"]),
    )
    heading = words("heading", model=result["model"], dataset=Path(result["dataset"]).name)
    return [
        f"<h1>{html.escape(heading)}</h1>",
        f"<p class='lead'>{lead}</p>",
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><div>{k}</div><div class='big'>{v}</div></div>" for k, v in cards
        )
        + "</div>",
    ]
