"""`convnet report lecture`: one page walking through the lecture's claims 1–8
(listed in docs/lecture.md) in order — the claim, the command that measures it, the figure measured on
this machine, a plot, and a one-line verdict (the sections are in lecture_claims.py,
lecture_counts.py and lecture_cost.py, made of lecture_words.py's parts), in
English or Korean (`--lang`; the text and the figures' words are the catalog's `lecture.*`
messages; a figure is drawn in English where no font has the language's letters).

To finish in minutes on a laptop CPU it reuses fully trained runs of the invariance
experiment when the runs directory holds them, and otherwise trains every variant briefly
(a few epochs on a subset; cached, so a second report reuses them). The page says which.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convnet.data.datasets import load_dataset
from convnet.data.transforms import to_model_input
from convnet.engine.run import Run
from convnet.experiments.invariance import (
    DEFAULT_SEEDS,
    InvarianceSettings,
    Variant,
    plan_variants,
    run_dir_for,
    run_invariance,
)
from convnet.files import atomic_write_text
from convnet.i18n import check_language
from convnet.report import claims_plots, lecture_claims, lecture_cost, lecture_counts
from convnet.report.lecture_words import NOT_JUDGED, Section, Words, code, table, variant_label
from convnet.report.run_report import STYLE

VERDICT_COLOURS = {
    "supported": "#2a9d4b",
    "not supported": "#d1495b",
    "depends": "#e09f3e",
    "not measured here": "#7f8c9a",
    NOT_JUDGED: "#6c5b7b",
}


@dataclass
class LectureSettings:
    epochs: int = 3
    # All 60,000 images: on 20,000 for 3 epochs mlp reached 95.3% and the pooling ablation
    # 96.2%, below the accuracy a compared claim needs (lecture_claims.ACCURACY_FLOOR).
    train_subset: int | None = None
    test_subset: int | None = 2_000
    runs_dir: str = "runs/experiments"
    repeats: int = 50
    data_dir: str | None = None
    threads: int = 0  # CPU threads for training and sweeps; 0: automatic
    seeds: int = DEFAULT_SEEDS  # of each pooling variant (claim 3)


def choose_invariance(settings: LectureSettings) -> tuple[InvarianceSettings, bool]:
    """Fully trained cached runs when all exist (True), else brief training (also cached)."""
    full = InvarianceSettings(
        runs_dir=settings.runs_dir,
        test_subset=settings.test_subset,
        data_dir=settings.data_dir,
        reuse_only=True,
        threads=settings.threads,
        seeds=settings.seeds,
    )
    if all(Run(run_dir_for(v, Path(full.runs_dir))).finished for v in plan_variants(full)):
        return full, True
    brief = InvarianceSettings(
        runs_dir=settings.runs_dir,
        epochs=settings.epochs,
        train_subset=settings.train_subset,
        test_subset=settings.test_subset,
        data_dir=settings.data_dir,
        threads=settings.threads,
        seeds=settings.seeds,
    )
    return brief, False


def training_note(settings: LectureSettings, reused: bool, w: Words) -> str:
    """How the networks were trained, in words: reused full runs or brief training."""
    if reused:
        return w("how.reused", images=60_000)
    subset = settings.train_subset
    images = w("how.first", count=subset) if subset else w("how.all", count=60_000)
    return w("how.brief", epochs=settings.epochs, images=images)


def judging_command(settings: LectureSettings, w: Words) -> str:
    """The commands that train the networks further (HTML): twice the epochs, and at least
    the default's (which gives every verdict), on every image; or each model's full training."""
    runs = (
        "" if settings.runs_dir == LectureSettings.runs_dir else f" --runs-dir {settings.runs_dir}"
    )
    if settings.seeds != LectureSettings.seeds:
        runs += f" --seeds {settings.seeds}"
    epochs = max(2 * settings.epochs, LectureSettings.epochs)
    report = f"convnet report lecture --epochs {epochs} --train-subset 0{runs}"
    return w(
        "retrain", report=code(report), invariance=code(f"convnet experiment invariance{runs}")
    )


def figures_folder(out: Path) -> Path:
    """Where a page's figures go: beside it, named after it (lecture.html: lecture_figures/),
    so pages in two languages in one folder keep their own."""
    return out.parent / f"{out.stem}_figures"


def render(
    sections: list[Section],
    how: str,
    seconds: float,
    variants: list[Variant],
    w: Words,
    figures: str = "lecture_figures",
) -> str:
    """The page: how the networks were trained, then one section per claim, its figures
    read from the folder `figures` beside it."""
    parts = []
    for s in sections:
        colour = VERDICT_COLOURS.get(s.verdict, "#7f8c9a")
        alt = html.escape(w("figure_alt", number=s.number), quote=True)
        figure = f"<img src='{figures}/{s.figure}' alt='{alt}'>" if s.figure else ""
        parts.append(
            f"<section><h2>{w('claim_heading', number=s.number)}</h2>"
            f"<p class='claim'>{html.escape(s.claim)}</p><p>{code(s.command)}</p>"
            f"<p>{s.measured}</p>{figure}{s.extra}<p class='verdict'><span "
            f"style='background:{colour}'>{html.escape(w.verdict(s.verdict))}</span> "
            f"{s.why}</p></section>"
        )
    header = [w(f"variants.{key}") for key in ("variant", "run", "how", "seconds")]
    rows = [
        [
            variant_label(v, w),
            v.run_dir,
            w(f"variants.{'reused' if v.reused else 'trained'}"),
            w.n(v.train_seconds, 1),
        ]
        for v in variants
    ]
    style = STYLE + (
        ".claim{font-size:1.1em;font-style:italic} .verdict span{color:white;padding:.15em .5em;"
        "border-radius:4px;font-weight:600} section{border-top:1px solid #ddd;margin-top:1.5em}"
        ".claim:lang(ko){font-style:normal;font-weight:500}"  # Hangul is not set in italics
        "td+td{white-space:nowrap} h3{margin-top:1.5em}"
    )
    title = html.escape(w("title"))
    lead = w("lead", seconds=w.n(seconds), how=html.escape(how))
    return (
        f"<!doctype html><html lang='{w.lang}'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body><h1>{title}</h1><p class='lead'>{lead}</p>"
        f"{table(header, rows, (1,))}{''.join(parts)}</body></html>\n"
    )


def write_lecture_report(
    out: Path, settings: LectureSettings, log: Callable[[str], None] = print, lang: str = "en"
) -> Path:
    """Measure claims 1–8 and write the page in `lang` (figures in a folder beside it)."""
    w = Words(check_language(lang))
    started = time.perf_counter()
    out = Path(out)
    figures = figures_folder(out)
    invariance_settings, reused = choose_invariance(settings)
    log(f"Claims 1, 3, 5: {training_note(settings, reused, Words('en'))}")
    how = training_note(settings, reused, w)
    result = run_invariance(invariance_settings, log=log)
    claims_plots.invariance_curves(result, figures / "invariance.png", lang=w.lang)
    retrain = judging_command(settings, w)
    log("Claim 6: timing lenet5, mlp_60k and mlp …")
    data_dir = Path(settings.data_dir) if settings.data_dir else None
    digit = to_model_input(load_dataset("mnist", "test", data_dir).images[:1], (1, 32, 32))[0]
    sections = [
        lecture_claims.claim_shift(result, figures, data_dir, retrain, w),
        lecture_counts.claim_weight_sharing(result, digit, figures, w),
        lecture_claims.claim_pooling(result, retrain, w),
        lecture_counts.claim_lenet(result, how, w),
        lecture_claims.claim_invariance(result, retrain, w),
        lecture_cost.claim_cost(settings.repeats, figures, w),
        lecture_cost.claim_imagenet(Path(settings.runs_dir).parent, w),
        lecture_counts.claim_depth(w),
    ]
    seconds = time.perf_counter() - started
    page = render(sections, how, seconds, result.variants, w, figures.name)
    atomic_write_text(out, page)
    log(f"Wrote {out} in {time.perf_counter() - started:.0f} s")
    return out
