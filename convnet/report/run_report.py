"""The report of one run: an HTML page with its figures, written beside the run's files, in
English or Korean (`lang`: every word is a `report.*` message of the catalog; model
descriptions and citations stay as the registry has them)."""

from __future__ import annotations

import html
from functools import partial
from pathlib import Path

import torch

from convnet import i18n
from convnet.analysis.summary import ModelSummary, matching_sources, summarize
from convnet.engine.config import TrainConfig
from convnet.engine.evaluate import Evaluation
from convnet.engine.metrics import APART_MARGIN, APART_SIGMAS
from convnet.engine.run import FIGURES, LoadedModel, Run
from convnet.files import atomic_write_text
from convnet.report import plots, training_plots
from convnet.report.plots import report_words, split_name

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .lead{color:#555;margin-top:0} img{max-width:100%}
table{border-collapse:collapse;margin:1em 0} td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left} .big{font-size:2em;font-weight:600}
.cards{display:flex;gap:2em;flex-wrap:wrap} .card{background:#f4f6f8;padding:.8em 1.2em;border-radius:8px}
.kept{margin:1em 0 0}
"""


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def summary_table(summary: ModelSummary, lang: str = "en") -> str:
    def number(value: int) -> str:
        return i18n.number(value, lang)

    rows = [
        [
            layer.name,
            layer.type,
            "×".join(map(str, layer.output_shape)),
            number(layer.trainable_params),
            number(layer.connections),
            number(layer.macs),
        ]
        for layer in summary.layers
    ]
    total = summary.total
    rows.append(
        [
            report_words(lang, "model.total"),
            report_words(lang, "model.depth", depth=str(total["depth"])),
            "",
            number(total["trainable_params"]),
            number(total["connections"]),
            number(total["macs"]),
        ]
    )
    keys = ("layer", "type", "output", "trainable_params", "connections", "macs")
    return _table([report_words(lang, f"model.{key}") for key in keys], rows)


def most_confident_mistakes(
    evaluation: Evaluation, count: int = 16
) -> tuple[torch.Tensor, list[str]]:
    """The held-out images the model got wrong with the highest confidence, as it saw them
    (before normalization), captioned "#index · probability" over "true→predicted"."""
    probabilities = evaluation.logits.softmax(dim=1)
    predicted = probabilities.argmax(dim=1)
    wrong = (predicted != evaluation.labels).nonzero().flatten()
    confidence = probabilities[wrong, predicted[wrong]]
    chosen = wrong[confidence.argsort(descending=True)[:count]]
    names = evaluation.source.class_names

    def short(name: str) -> str:  # long class names would run into the next image
        return name if len(name) <= 12 else name[:11] + "…"

    captions = [
        f"#{int(evaluation.indices[i])} · {probabilities[i, predicted[i]].item():.0%}\n"
        f"{short(names[int(evaluation.labels[i])])}→{short(names[int(predicted[i])])}"
        for i in chosen
    ]
    images = [evaluation.source.eval_image(int(evaluation.indices[i])) for i in chosen]
    return (torch.stack(images) if images else torch.empty(0)), captions


def split_size(config: TrainConfig | None, split: str) -> int | None:
    """The number of images in a registered data set's split; None for image folders."""
    from convnet.data.datasets import get_dataset_spec

    if config is None or config.data:
        return None
    return get_dataset_spec(config.source_name).split_sizes.get(split)


def subset_notes(
    config: TrainConfig | None, split: str, scored: int, lang: str = "en"
) -> tuple[str, str]:
    """Figure-title notes of a run on part of its data: ("trained on 2,000 of 60,000
    training images", "on 2,000 of 10,000 test images"), "" where all were used."""
    if config is None:
        return "", ""
    trained = ""
    training_images = report_words(lang, "what.training")
    split_images = report_words(lang, "what.split", split=split_name(split, lang))
    if config.train_subset:
        total = split_size(config, "train")
        trained = plots.subset_note(
            min(config.train_subset, total or config.train_subset), total, training_images, lang
        )
    total = split_size(config, split)  # None for image folders: their size is not known here
    scored_note = "" if total is None else plots.subset_note(scored, total, split_images, lang)
    if total is None and config.test_subset and scored >= config.test_subset:
        scored_note = plots.subset_note(scored, None, split_images, lang)
    return (
        report_words(lang, "note.trained", note=trained) if trained else "",
        report_words(lang, "note.scored", note=scored_note) if scored_note else "",
    )


def apart_rule(lang: str = "en") -> str:
    """engine.metrics' rule for a class that stands apart, in `lang`."""
    margin, sigmas = f"{APART_MARGIN * 100:g}", f"{APART_SIGMAS:g}"
    return report_words(lang, "apart_rule", margin=margin, sigmas=sigmas)


def extremes_sentence(result: dict, lang: str = "en") -> str:
    """The easiest and hardest classes of `result`, or that no class stands apart."""
    rule = html.escape(apart_rule(lang))
    if not result["easiest"] and not result["hardest"]:
        return f"<p>{report_words(lang, 'none_apart', rule=rule)}</p>"

    def listed(rows: list[dict]) -> str:
        named = ", ".join(
            f"{html.escape(r['name'])} ({i18n.percent(r['accuracy'], lang, 2)})" for r in rows
        )
        return named or report_words(lang, "none_stands_apart")

    easiest, hardest = listed(result["easiest"]), listed(result["hardest"])
    rule = rule[:1].upper() + rule[1:]  # a sentence of its own here
    return f"<p>{report_words(lang, 'extremes', easiest=easiest, hardest=hardest, rule=rule)}</p>"


def write_run_report(
    run: Run, loaded: LoadedModel, evaluation: Evaluation, lang: str = "en"
) -> Path:
    """Figures plus report.html in the run directory, for a run on any data source, in
    `lang`; returns the page's path. Figures of a run on part of its data say so in their
    titles."""
    result = evaluation.result
    split = result["split"]
    history = run.history()
    trained_note, scored_note = subset_notes(loaded.config, split, result["num_examples"], lang)
    both = "; ".join(note for note in (trained_note, scored_note) if note)
    parts = [
        *_training_parts(run, history, split, trained_note, both, lang),
        *_error_parts(run, evaluation, both, scored_note, lang),
        *_model_parts(loaded, lang),
    ]
    words = partial(report_words, lang)
    page = (
        f"<!doctype html><html lang='{lang}'><head><meta charset='utf-8'>"
        f"<title>{html.escape(words('page_title', model=loaded.name))}</title>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{STYLE}</style></head><body>"
        f"{_header(run, loaded, evaluation, history, lang)}{''.join(parts)}</body></html>\n"
    )
    atomic_write_text(run.report_path, page)
    return run.report_path


def _training_parts(
    run: Run, history: list[dict], split: str, trained_note: str, both: str, lang: str
) -> list[str]:
    """The training section: the curves per epoch, the loss and rate of every step, and the
    table of epochs."""
    words = partial(report_words, lang)
    figures, steps = run.figures, run.steps()
    parts = []
    if history or steps:
        parts.append(f"<h2>{words('training')}</h2>")
    if history:
        training_plots.training_curves(history, figures / "curves.png", split, both, lang=lang)
        parts.append(f"<img src='{FIGURES}/curves.png' alt='{words('alt.curves')}'>")
        parts.append(f"<p>{words('lag', split=split_name(split, lang))}</p>")
    if steps:
        training_plots.training_steps(steps, figures / "steps.png", trained_note, lang=lang)
        parts.append(f"<img src='{FIGURES}/steps.png' alt='{words('alt.steps')}'>")
    if history:
        parts.append(_history_table(history, split, lang))
    return parts


def _history_table(history: list[dict], split: str, lang: str) -> str:
    """One row per epoch: losses, errors, images/s and seconds."""
    averaged = bool(history) and all("ema_eval_error" in r for r in history)  # --model-ema
    keys = ("epoch", "train_loss", "train_error", "loss", "error", "top5_error",
            *(("ema_error",) if averaged else ()), "images_per_second", "seconds")  # fmt: skip
    header = [report_words(lang, f"history.{key}", split=split_name(split, lang)) for key in keys]

    def pct(value: float) -> str:
        return i18n.percent(value, lang, 2)

    rows = [
        [
            int(r["epoch"]),
            i18n.number(r["train_loss"], lang, 4),
            pct(r["train_error"]),
            i18n.number(r["eval_loss"], lang, 4) if "eval_loss" in r else "–",
            pct(r["eval_error"]),
            pct(r["eval_top5_error"]) if "eval_top5_error" in r else "–",
            *((pct(r["ema_eval_error"]),) if averaged else ()),
            i18n.number(r["images_per_second"], lang),
            i18n.number(r["epoch_seconds"], lang, 1),
        ]
        for r in history
    ]
    return _table(header, rows)


def _error_parts(
    run: Run, evaluation: Evaluation, both: str, scored_note: str, lang: str
) -> list[str]:
    """The errors section: confusions, per-class accuracy, the most confident mistakes and
    the files that could not be scored."""
    words = partial(report_words, lang)
    figures, result = run.figures, evaluation.result
    names = list(evaluation.source.class_names)
    parts = [f"<h2>{words('errs')}</h2>"]
    if len(names) <= plots.MANY_CLASSES:
        plots.confusion_figure(
            result["confusion_matrix"], names, figures / "confusion.png", result["split"], both,
            lang=lang,
        )  # fmt: skip
        parts.append(f"<img src='{FIGURES}/confusion.png' alt='{words('alt.confusion')}'>")
    plots.class_accuracy_figure(result, figures / "per_class.png", both, lang=lang)
    parts.append(f"<img src='{FIGURES}/per_class.png' alt='{words('alt.per_class')}'>")
    parts.append(extremes_sentence(result, lang))
    if result["confusions"]:
        confusions = ", ".join(
            f"{html.escape(c['true'])} → {html.escape(c['predicted'])} ×{c['count']}"
            for c in result["confusions"]
        )
        parts.append(f"<p>{words('confusions', confusions=confusions)}</p>")
    images, captions = most_confident_mistakes(evaluation)
    if len(images):
        title = words("mistakes_figure") + (f", {scored_note}" if scored_note else "")
        plots.image_grid(images, captions, figures / "mistakes.png", title, lang=lang)
        parts.append(
            f"<h2>{words('mistakes')}</h2>"
            f"<img src='{FIGURES}/mistakes.png' alt='{words('alt.mistakes')}'>"
        )
    if result.get("skipped"):
        parts.append(
            f"<h2>{words('skipped', count=result['num_skipped'])}</h2>"
            + _table(
                [words("file"), words("reason")],
                [[item["file"], item["reason"]] for item in result["skipped"]],
            )
        )
    return parts


def _model_parts(loaded: LoadedModel, lang: str) -> list[str]:
    """The model section: its description and per-layer accounting (and for LeNet-5, which
    published table it matches)."""
    words = partial(report_words, lang)
    summary = summarize(loaded.model.cpu(), loaded.input_size, loaded.name)
    parts = [
        f"<h2>{words('model.title')}</h2>"
        + f"<p>{html.escape(loaded.spec.description)}.</p>"
        + summary_table(summary, lang)
    ]
    if loaded.spec.family == "LeNet":
        matches = [source for source, ok in matching_sources(summary).items() if ok]
        which = (
            words("lenet.match", sources=html.escape(" & ".join(matches)))
            if matches
            else words("lenet.variant", model=html.escape(loaded.name))
        )
        lecture = words("lenet.lecture", command="<code>convnet report lecture</code>")
        parts.append(f"<p>{which} {lecture}</p>")
    return parts


def _header(
    run: Run, loaded: LoadedModel, evaluation: Evaluation, history: list[dict], lang: str
) -> str:
    """The title, the paper and the cards: errors, parameters, images scored, training
    images × epochs, time."""
    words = partial(report_words, lang)
    result = evaluation.result
    shown_split = split_name(result["split"], lang)
    parameters = sum(p.numel() for p in loaded.model.parameters())
    cards = [
        (words("card.error", split=shown_split), i18n.percent(result["top1_error"], lang, 2)),
        # top-5 of 5 classes or fewer is always right: no card
        *(
            [(words("card.top5"), i18n.percent(result["top5_error"], lang, 2))]
            if len(result.get("per_class", ())) > 5
            else []
        ),
        (words("card.parameters"), i18n.number(parameters, lang)),
        (words("card.images", split=shown_split), i18n.number(result["num_examples"], lang)),
    ]
    results = run.results() if run.finished else {}
    if "num_train_examples" in results:  # results of older runs do not say
        trained = f"{i18n.number(results['num_train_examples'], lang)} × {len(history)}"
        cards.append((words("card.training"), trained))
    if history:
        seconds = i18n.number(sum(r["epoch_seconds"] for r in history), lang)
        cards.append((words("card.time"), words("seconds", seconds=seconds)))
    title = words("title", model=loaded.name, dataset=evaluation.source.name)
    return (
        f"<h1>{html.escape(title)}</h1>"
        f"<p class='lead'>{html.escape(loaded.spec.paper)}</p><div class='cards'>"
        + "".join(
            f"<div class='card'><div>{k}</div><div class='big'>{v}</div></div>" for k, v in cards
        )
        + "</div>"
        + _kept(results.get("kept"), result["split"], lang)
    )


def _kept(kept: dict | None, split: str, lang: str) -> str:
    """A line saying which weights the run kept as its model, where that is not simply the
    last epoch's (--model-ema, --patience): the scores above are theirs."""
    if not kept or (kept["weights"] == "model" and kept.get("patience") is None):
        return ""
    words = partial(report_words, lang)
    weights = words("kept.average" if kept["weights"] != "model" else "kept.weights")
    reason = ""
    if kept.get("patience") is not None:
        reason = words("kept.best", split=split_name(split, lang), patience=kept["patience"])
        if split == "test":  # chosen on the very images scored
            reason += words("kept.optimistic")
    line = words(
        "kept", weights=weights, epoch=kept["epoch"], trained=kept["epochs_trained"], reason=reason
    )
    return f"<p class='kept'>{html.escape(line)}</p>"
