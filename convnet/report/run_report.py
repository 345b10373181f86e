"""The report of one run: an HTML page with its figures, written beside the run's files."""

from __future__ import annotations

import html
from pathlib import Path

import torch

from convnet.analysis.summary import ModelSummary, matching_sources, summarize
from convnet.engine.config import TrainConfig
from convnet.engine.evaluate import Evaluation
from convnet.engine.metrics import APART_RULE
from convnet.engine.run import FIGURES, LoadedModel, Run
from convnet.files import atomic_write_text
from convnet.report import plots, training_plots

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em} .lead{color:#555;margin-top:0} img{max-width:100%}
table{border-collapse:collapse;margin:1em 0} td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left} .big{font-size:2em;font-weight:600}
.cards{display:flex;gap:2em;flex-wrap:wrap} .card{background:#f4f6f8;padding:.8em 1.2em;border-radius:8px}
"""


def _table(header: list[str], rows: list[list[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def summary_table(summary: ModelSummary) -> str:
    rows = [
        [
            layer.name,
            layer.type,
            "×".join(map(str, layer.output_shape)),
            f"{layer.trainable_params:,}",
            f"{layer.connections:,}",
            f"{layer.macs:,}",
        ]
        for layer in summary.layers
    ]
    total = summary.total
    rows.append(
        [
            "total",
            f"depth {total['depth']}",
            "",
            f"{total['trainable_params']:,}",
            f"{total['connections']:,}",
            f"{total['macs']:,}",
        ]
    )
    return _table(["layer", "type", "output", "trainable params", "connections", "MACs"], rows)


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


def subset_notes(config: TrainConfig | None, split: str, scored: int) -> tuple[str, str]:
    """Figure-title notes of a run on part of its data: ("trained on 2,000 of 60,000
    training images", "on 2,000 of 10,000 test images"), "" where all were used."""
    if config is None:
        return "", ""
    trained = ""
    if config.train_subset:
        total = split_size(config, "train")
        trained = plots.subset_note(
            min(config.train_subset, total or config.train_subset), total, "training images"
        )
    scored_note = plots.subset_note(scored, split_size(config, split), f"{split} images")
    if config.test_subset and not scored_note:
        scored_note = plots.subset_note(scored, None, f"{split} images")
    return (f"trained on {trained}" if trained else "", f"on {scored_note}" if scored_note else "")


def extremes_sentence(result: dict) -> str:
    """The easiest and hardest classes of `result`, or that no class stands apart."""
    if not result["easiest"] and not result["hardest"]:
        return f"<p>No class stands apart ({APART_RULE}).</p>"

    def listed(rows: list[dict]) -> str:
        named = ", ".join(f"{html.escape(r['name'])} ({r['accuracy']:.2%})" for r in rows)
        return named or "none stands apart"

    return (
        f"<p>Easiest: {listed(result['easiest'])}. Hardest: {listed(result['hardest'])}. "
        f"({html.escape(APART_RULE[0].upper() + APART_RULE[1:])}.)</p>"
    )


def write_run_report(run: Run, loaded: LoadedModel, evaluation: Evaluation) -> Path:
    """Figures plus report.html in the run directory, for a run on any data source; returns
    the page's path. Figures of a run on part of its data say so in their titles."""
    figures = run.figures
    result = evaluation.result
    split = result["split"]
    history = run.history()
    steps = run.steps()
    names = list(evaluation.source.class_names)
    trained_note, scored_note = subset_notes(loaded.config, split, result["num_examples"])
    both = "; ".join(note for note in (trained_note, scored_note) if note)
    parts = []
    if history or steps:
        parts.append("<h2>Training</h2>")
    if history:
        training_plots.training_curves(history, figures / "curves.png", split, both)
        parts.append(f"<img src='{FIGURES}/curves.png' alt='training curves'>")
        parts.append(
            f"<p>Training loss and error are averaged over each epoch's batches as they were "
            f"trained (augmented where the recipe augments, with the weights still changing), "
            f"so they lag the {split} figures, which score the epoch's final weights, and can "
            f"lie above them.</p>"
        )
    if steps:
        training_plots.training_steps(steps, figures / "steps.png", trained_note)
        parts.append(
            f"<img src='{FIGURES}/steps.png' alt='training loss and learning rate per step'>"
        )
    if history:
        parts.append(
            _table(
                [
                    "epoch",
                    "train loss",
                    "train error",
                    f"{split} loss",
                    f"{split} error",
                    f"{split} top-5 error",
                    "images/s",
                    "seconds",
                ],
                [
                    [
                        int(r["epoch"]),
                        f"{r['train_loss']:.4f}",
                        f"{r['train_error']:.2%}",
                        f"{r['eval_loss']:.4f}" if "eval_loss" in r else "–",
                        f"{r['eval_error']:.2%}",
                        f"{r['eval_top5_error']:.2%}" if "eval_top5_error" in r else "–",
                        f"{r['images_per_second']:,.0f}",
                        f"{r['epoch_seconds']:.1f}",
                    ]
                    for r in history
                ],
            )
        )
    parts.append("<h2>Where it errs</h2>")
    if len(names) <= plots.MANY_CLASSES:
        plots.confusion_figure(
            result["confusion_matrix"], names, figures / "confusion.png", split, both
        )
        parts.append(f"<img src='{FIGURES}/confusion.png' alt='confusion matrix'>")
    plots.class_accuracy_figure(result, figures / "per_class.png", both)
    parts.append(f"<img src='{FIGURES}/per_class.png' alt='per-class accuracy'>")
    parts.append(extremes_sentence(result))
    if result["confusions"]:
        parts.append(
            "<p>Most frequent confusions (true → predicted): "
            + ", ".join(
                f"{html.escape(c['true'])} → {html.escape(c['predicted'])} ×{c['count']}"
                for c in result["confusions"]
            )
            + ".</p>"
        )
    images, captions = most_confident_mistakes(evaluation)
    if len(images):
        title = "Most confident mistakes (true→predicted)" + (
            f", {scored_note}" if scored_note else ""
        )
        plots.image_grid(images, captions, figures / "mistakes.png", title)
        parts.append(
            f"<h2>Most confident mistakes</h2><img src='{FIGURES}/mistakes.png' alt='mistakes'>"
        )
    if result.get("skipped"):
        parts.append(
            f"<h2>Skipped files ({result['num_skipped']})</h2>"
            + _table(
                ["file", "reason"], [[item["file"], item["reason"]] for item in result["skipped"]]
            )
        )
    summary = summarize(loaded.model.cpu(), loaded.input_size, loaded.name)
    parts.append(
        "<h2>The model</h2>"
        + f"<p>{html.escape(loaded.spec.description)}.</p>"
        + summary_table(summary)
    )
    if loaded.spec.family == "LeNet":
        matches = [source for source, ok in matching_sources(summary).items() if ok]
        which = (
            f"These counts match {html.escape(' and '.join(matches))}."
            if matches
            else "These counts are not the published LeNet-5's (LeCun et al. 1998: 60,000 "
            "parameters, 340,908 connections), which <code>lenet5_1998</code> reproduces: "
            f"{html.escape(loaded.name)} is a variant of it."
        )
        parts.append(
            f"<p>{which} The lecture's “about 14,000 parameters and 187,000 connections” "
            "does not match the published LeNet-5 (60,000 and 340,908).</p>"
        )
    cards = [
        (f"{split} error", f"{result['top1_error']:.2%}"),
        ("top-5 error", f"{result['top5_error']:.2%}"),
        ("parameters", f"{sum(p.numel() for p in loaded.model.parameters()):,}"),
        (f"{split} images", f"{result['num_examples']:,}"),
    ]
    if history:
        cards.append(("training time", f"{sum(r['epoch_seconds'] for r in history):.0f} s"))
    header = (
        f"<h1>{html.escape(loaded.name)} on {html.escape(evaluation.source.name)}</h1>"
        f"<p class='lead'>{html.escape(loaded.spec.paper)}</p><div class='cards'>"
        + "".join(
            f"<div class='card'><div>{k}</div><div class='big'>{v}</div></div>" for k, v in cards
        )
        + "</div>"
    )
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(loaded.name)} report"
        f"</title><meta name='viewport' content='width=device-width, initial-scale=1'><style>{STYLE}</style>"
        f"</head><body>{header}{''.join(parts)}</body></html>\n"
    )
    atomic_write_text(run.report_path, page)
    return run.report_path
