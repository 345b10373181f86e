"""The sections of `convnet report lecture`, one function per claim of the lecture: each
measures (or looks up) what it needs and returns the claim, the command, what was
measured, a figure and a verdict — supported, not supported, depends, or not measured here.

Every sentence is a template of the message catalog (`lecture.*` keys in
convnet/locales/<lang>.json) filled with the measured values, numbers written as the
section's language writes them. Verdicts stay English identifiers (the page translates them
when it renders), so the logic is the same in every language.
"""

from __future__ import annotations

import html
import importlib.util
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from convnet import i18n
from convnet.analysis.summary import LENET5_SOURCES, matching_sources, summarize, traced_depth
from convnet.data.datasets import DATASETS
from convnet.engine.run import CONFIG_FILE, load_run
from convnet.experiments.cost import run_cost
from convnet.experiments.invariance import InvarianceResult, Variant
from convnet.experiments.shift import feature_map_shift, run_shift
from convnet.models import MODELS, get_model
from convnet.report import claims_plots

# The clean accuracy on MNIST's test digits that every network in a comparison must reach
# before a claim that compares them is judged: an undertrained network teaches the opposite
# lesson (a lenet5 trained for 16 steps, at 18% accuracy, made the ordinary network look
# the robust one). Each of lenet5, mlp and the pooling ablation passes it after the
# report's default brief training (docs/lecture.md, "The report").
ACCURACY_FLOOR = 0.97
NOT_JUDGED = "not judged"
# Each verdict identifier and its catalog key (lecture.verdict.<key>).
VERDICTS = {
    "supported": "supported",
    "not supported": "not_supported",
    "depends": "depends",
    "not measured here": "not_measured",
    NOT_JUDGED: "not_judged",
}

# Claim 8: the networks and the depths the lecture names.
LECTURE_DEPTHS = {"alexnet": 8, "vgg19": 19, "googlenet": 22, "resnet152": 152}


@dataclass
class Section:
    number: int
    claim: str
    command: str
    measured: str  # HTML
    verdict: str  # one of VERDICTS' identifiers
    why: str  # HTML
    figure: str | None = None
    extra: str = ""  # HTML
    lang: str = "en"


class Words:
    """The report's text in one language: `lecture.*` messages of the catalog, whose integer
    values are written with the language's digit grouping (pass an index as a str), and
    numbers and percentages as the language writes them."""

    def __init__(self, lang: str):
        self.lang = lang
        self.decimal = i18n.text(lang, "number.decimal")

    def __call__(self, key: str, **values: object) -> str:
        written = {
            name: self.n(value) if isinstance(value, int) and not isinstance(value, bool) else value
            for name, value in values.items()
        }
        return i18n.text(self.lang, f"lecture.{key}", **written)

    def n(self, value: float, digits: int = 0) -> str:
        return i18n.number(value, self.lang, digits)

    def pct(self, fraction: float, digits: int = 1) -> str:
        return i18n.percent(fraction, self.lang, digits)

    def verdict(self, verdict: str) -> str:
        return self(f"verdict.{VERDICTS.get(verdict, verdict)}")

    def headers(self, *keys: str) -> list[str]:
        return [self(f"table.{key}") for key in keys]


def code(command: str) -> str:
    return f"<code>{html.escape(command)}</code>"


def table(header: list[str], rows: list[list[object]], code_columns: tuple[int, ...] = ()) -> str:
    """An HTML table, every cell escaped; the cells of `code_columns` set as code."""
    cells = [
        "".join(
            f"<td>{code(str(v)) if i in code_columns else html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        for row in rows
    ]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"<table><tr>{head}</tr>{''.join(f'<tr>{row}</tr>' for row in cells)}</table>"


def variant_label(variant: Variant, w: Words) -> str:
    """A variant's label in w's language ("lenet5 + augmentation" by its kind)."""
    return (
        variant.label
        if variant.kind == "plain"
        else w(f"variant.{variant.kind}", model=variant.model)
    )


def _label(result: InvarianceResult, label: str, w: Words) -> str:
    variant = next((v for v in result.variants if v.label == label), None)
    return html.escape(label if variant is None else variant_label(variant, w))


def gate(
    section: Section, result: InvarianceResult, labels: tuple[str, ...], retrain: str
) -> Section:
    """The section as it is when every network in `labels` reached ACCURACY_FLOOR; else
    its verdict withheld, saying which networks fell short and the command (`retrain`,
    HTML) that judges it."""
    short = [
        (label, result.clean_accuracy(label))
        for label in labels
        if result.clean_accuracy(label) < ACCURACY_FLOOR
    ]
    if not short:
        return section
    w = Words(section.lang)
    section.verdict = NOT_JUDGED
    short_text = ", ".join(f"{_label(result, label, w)} {w.pct(value)}" for label, value in short)
    section.why = w("gate", short=short_text, floor=w.pct(ACCURACY_FLOOR), command=retrain)
    return section


def _verdict(results: list[bool]) -> str:
    return "supported" if all(results) else "not supported" if not any(results) else "depends"


def _robustness(
    result: InvarianceResult, names: tuple[str, ...], better: str, worse: str
) -> list[bool]:
    return [result.mean_accuracy(n, better) - result.mean_accuracy(n, worse) > 0.02 for n in names]


def claim_shift(
    result: InvarianceResult, figures: Path, data_dir: Path | None, retrain: str, w: Words
) -> Section:
    shift = run_shift(data_dir=data_dir)
    claims_plots.shift_figure(shift, figures / "shift.png", lang=w.lang)
    cnn, mlp = result.pair
    curve = result.curve("translate_x")
    at = {level: curve.levels.index(level) for level in (0.0, -2.0, -4.0)}
    stats, near = shift.test_set, shift.closest_to_lecture
    fragile = _robustness(result, ("translate_x", "translate_y", "rotate", "scale"), cnn, mlp)
    mlp_at = [
        w("shift.at", accuracy=w.pct(curve.accuracy[mlp][i]), pixels=abs(int(level)))
        for level, i in at.items()
    ]
    measured = w(
        "shift.measured",
        index=str(shift.index),
        label=shift.label,
        changed=shift.changed,
        inputs=shift.inputs,
        black_to_white=shift.black_to_white,
        white_to_black=shift.white_to_black,
        count=stats["count"],
        mean=w.n(stats["mean"], 1),
        std=w.n(stats["std"], 1),
        min=stats["min"],
        max=stats["max"],
        **{f"near_{key}": str(value) if key == "index" else value for key, value in near.items()},
        mlp=mlp,
        mlp_accuracy=", ".join(mlp_at),
        cnn=cnn,
        cnn_accuracy=", ".join(w.pct(curve.accuracy[cnn][i]) for i in at.values()),
    )
    why = w("shift.why", mlp=mlp, cnn=cnn, count=sum(fragile), total=len(fragile))
    section = Section(
        1,
        w("claim.1"),
        "convnet experiment shift --pixels 2",
        measured,
        _verdict(fragile),
        why,
        "shift.png",
        lang=w.lang,
    )
    return gate(section, result, result.pair, retrain)


def claim_weight_sharing(
    result: InvarianceResult, digit: torch.Tensor, figures: Path, w: Words
) -> Section:
    cnn = result.pair[0]
    loaded = load_run(Path(next(v.run_dir for v in result.variants if v.label == cnn)))
    first_name, first_layer = next(iter(loaded.model.features.named_children()))
    measured_shift = feature_map_shift(first_layer, digit, loaded.spec.normalization, 2, first_name)
    claims_plots.feature_map_figure(measured_shift, figures / "feature_maps.png", lang=w.lang)
    paper = summarize(get_model("lenet5_1998"), (1, 32, 32)).layers
    rows = [
        [
            row.name.split(".")[-1],
            w.n(row.trainable_params),
            w.n(row.connections),
            w.n(row.connections / max(row.trainable_params, 1)) + "×",
        ]
        for row in paper
        if row.trainable_params
    ]
    c1 = paper[0]
    exact = measured_shift.max_difference <= 1e-4 * max(measured_shift.max_response, 1.0)
    difference = f"{measured_shift.max_difference:.1e}".replace(".", w.decimal)
    response = w.n(measured_shift.max_response, 2)
    measured = w(
        "sharing.measured",
        difference=difference,
        params=c1.trainable_params,
        response=response,
        connections=c1.connections,
    )
    header = w.headers("paper_layer", "parameters", "connections", "per_parameter")
    return Section(
        2,
        w("claim.2"),
        "convnet summary lenet5_1998",
        measured,
        _verdict([exact, c1.connections > 100 * c1.trainable_params]),
        w("sharing.why"),
        "feature_maps.png",
        table(header, rows, (0,)),
        w.lang,
    )


def claim_pooling(result: InvarianceResult, retrain: str, w: Words) -> Section:
    cnn = result.pair[0]
    ablation = next((v.label for v in result.variants if v.kind == "ablation"), None)
    shapes = {
        row.name.split(".")[-1]: row.output_shape
        for row in summarize(get_model(cnn), (1, 32, 32)).layers
    }
    halves = shapes["s2"][1] * 2 == shapes["c1"][1] and shapes["s4"][1] * 2 == shapes["c3"][1]
    sizes = {name: "×".join(map(str, shapes[name][1:])) for name in ("c1", "s2", "c3", "s4")}
    measured = w("pooling.resolution", **sizes)
    if ablation is None:
        return Section(
            3,
            w("claim.3"),
            "convnet summary lenet5",
            measured,
            "depends",
            w("pooling.no_ablation"),
            lang=w.lang,
        )
    names = ("translate_x", "translate_y", "rotate")
    helps = _robustness(result, names, cnn, ablation)
    items = [
        w(
            "pooling.item",
            distortion=w(f"distortion.{n}"),
            pooling=w.pct(result.mean_accuracy(n, cnn)),
            conv=w.pct(result.mean_accuracy(n, ablation)),
        )
        for n in names
    ]
    measured += " " + w("pooling.compare", items="; ".join(items))
    why = w("pooling.why", halves=w("yes" if halves else "no"), count=sum(helps), total=len(helps))
    section = Section(
        3,
        w("claim.3"),
        "convnet experiment invariance --models lenet5 --variants plain,ablation",
        measured,
        _verdict([halves, *helps]) if halves else "not supported",
        why,
        "invariance.png",
        lang=w.lang,
    )
    return gate(section, result, (cnn, ablation), retrain)


def claim_lenet(result: InvarianceResult, how: str, w: Words) -> Section:
    paper = summarize(get_model("lenet5_1998"), (1, 32, 32), "lenet5_1998")
    modern = summarize(get_model("lenet5"), (1, 32, 32), "lenet5")
    matches = matching_sources(paper)
    lecture = LENET5_SOURCES["the lecture"]
    published = LENET5_SOURCES["LeCun et al. 1998 (Proc. IEEE)"]
    shapes = [row.output_shape for row in paper.layers]
    structure = shapes[0] == [6, 28, 28] and shapes[1] == [6, 14, 14] and shapes[3] == [16, 5, 5]
    sources = [w("source.lecture") if s == "the lecture" else s for s, ok in matches.items() if ok]
    measured = w(
        "lenet.measured",
        params=paper.total["trainable_params"],
        connections=paper.total["connections"],
        sources=html.escape(", ".join(sources) or w("lenet.no_source")),
        lecture_params=lecture["trainable_params"],
        lecture_connections=lecture["connections"],
        agree=w("lenet.match" if matches["the lecture"] else "lenet.no_match"),
        modern_params=modern.total["trainable_params"],
        error=w.pct(1 - result.clean_accuracy(result.pair[0])),
        how=html.escape(how),
        published=w.pct(0.0095, 2),
    )
    why = w("lenet.why", connections=published["connections"], params=published["trainable_params"])
    rows = [
        [r.name, "×".join(map(str, r.output_shape)), w.n(r.trainable_params), w.n(r.connections)]
        for r in paper.layers
    ]
    header = w.headers("layer", "output", "parameters", "connections")
    return Section(
        4,
        w("claim.4"),
        "convnet summary lenet5_1998",
        measured,
        "depends" if structure and not matches["the lecture"] else _verdict([structure]),
        why,
        None,
        table(header, rows, (0,)),
        w.lang,
    )


def claim_invariance(result: InvarianceResult, retrain: str, w: Words) -> Section:
    cnn, mlp = result.pair
    clean = result.clean_accuracy(cnn)
    rows, robust, invariant = [], [], []
    for curve in result.curves:
        name, worst = curve.distortion, min(curve.accuracy[cnn])
        robust.append(result.mean_accuracy(name, cnn) - result.mean_accuracy(name, mlp) > 0.02)
        invariant.append(clean - worst <= 0.05)
        gap = next(g for g in result.gaps() if g["distortion"] == name)
        rows.append(
            [
                w(f"distortion.{name}"),
                w.pct(result.mean_accuracy(name, cnn)),
                w.pct(result.mean_accuracy(name, mlp)),
                w.pct(worst),
                ("+" if gap["plain_gap"] >= 0 else "") + w.n(100 * gap["plain_gap"], 1),
                "" if gap.get("closed") is None else w.pct(gap["closed"], 0),
            ]
        )
    verdict = "supported" if all(invariant) else "depends" if all(robust) else _verdict(robust)
    measured = w(
        "invariance.measured",
        cnn=cnn,
        mlp=mlp,
        robust=sum(robust),
        invariant=sum(invariant),
        total=len(robust),
        clean=w.pct(clean),
    )
    header = [
        w("table.distortion"),
        w("table.mean", model=cnn),
        w("table.mean", model=mlp),
        w("table.worst", model=cnn),
        w("table.gap"),
        w("table.gap_closed"),
    ]
    section = Section(
        5,
        w("claim.5"),
        "convnet experiment invariance --models lenet5,mlp",
        measured,
        verdict,
        w("invariance.why"),
        "invariance.png",
        table(header, rows),
        w.lang,
    )
    return gate(section, result, result.pair, retrain)


def _cost_item(claim: dict, w: Words) -> str:
    """One of the cost experiment's three claims beside what was measured."""
    values, kind = claim["values"], claim["id"]

    def settings(write: Callable[[float], str]) -> str:  # "inference batch 1: 61%, …"
        return ", ".join(
            w(
                "cost.setting",
                kind=w(f"cost.{key.rpartition(' batch ')[0]}"),
                batch=key.rpartition(" batch ")[2],
                value=write(value),
            )
            for key, value in values.items()
        )

    if kind == "convolution_share":
        measured, why = settings(lambda share: w.pct(share, 0)), w("cost.convolution_share.why")
    elif kind == "slowdown":
        measured = settings(lambda ratio: w.n(ratio, 1) + "×")
        cnn, twin = claim["models"]
        why = w("cost.slowdown.why", cnn=cnn, twin=twin, macs=w.n(claim["macs_ratio"], 1))
    else:
        weights, activations, cnn = (
            values["weight_bytes"],
            values["activation_bytes"],
            claim["model"],
        )
        mlps = [name for name in weights if name != cnn]

        def kib(size: float) -> str:
            return f"{w.n(size / 1024, 1)} KiB"

        def each(sizes: dict) -> str:
            return ", ".join(f"{name} {kib(sizes[name])}" for name in mlps)

        measured = w(
            "cost.memory.measured",
            cnn_weights=kib(weights[cnn]),
            mlp_weights=each(weights),
            cnn_activations=kib(activations[cnn]),
            mlp_activations=each(activations),
        )
        heavier = [name for name in mlps if weights[cnn] > weights[name]]
        ratio = min(activations[cnn] / max(activations[name], 1) for name in mlps)
        larger = (
            w("cost.memory.heavier", models=", ".join(heavier))
            if heavier
            else w("cost.memory.heavier_none")
        )
        why = w("cost.memory.why", ratio=w.n(ratio, 1), weights=larger)
    return w(
        "cost.item",
        claim=w(f"cost.{kind}.claim"),
        measured=measured,
        verdict=w.verdict(claim["verdict"]),
        why=why,
    )


def claim_cost(repeats: int, figures: Path, w: Words) -> Section:
    result = run_cost(
        ("lenet5", "mlp_60k", "mlp"), repeats_batch1=repeats, repeats_batch256=max(3, repeats // 5)
    )
    claims_plots.cost_bars(result, figures / "cost.png", lang=w.lang)
    verdicts = [c["verdict"] for c in result.claims]
    overall = verdicts[0] if len(set(verdicts)) == 1 else "depends"
    measured = "<ul>" + "".join(f"<li>{_cost_item(c, w)}</li>" for c in result.claims) + "</ul>"
    why = w(
        "cost.why",
        device=result.device,
        precision=result.precision,
        threads=result.threads,
        load=w.n(result.load_average[0], 1),
    )
    return Section(
        6,
        w("claim.6"),
        f"convnet experiment cost --models lenet5,mlp_60k,mlp --repeats {repeats}",
        measured,
        overall,
        why,
        "cost.png",
        lang=w.lang,
    )


def _runs_on(runs_root: Path, datasets: set[str]) -> list[str]:
    found = []
    for path in sorted(runs_root.glob("**/" + CONFIG_FILE))[:2000] if runs_root.is_dir() else []:
        try:
            if json.loads(path.read_text()).get("dataset") in datasets:
                found.append(str(path.parent))
        except (OSError, ValueError):
            continue
    return found


def claim_imagenet(runs_root: Path, w: Words) -> Section:
    datasets = sorted(name for name in DATASETS if "imagenet" in name or "ilsvrc" in name)
    photo_models = sorted(name for name, spec in MODELS.items() if spec.input_size[1] >= 224)
    runs = _runs_on(runs_root, set(datasets) | {"imagenet"})
    measured = w(
        "imagenet.measured",
        datasets=html.escape(", ".join(datasets) or w("none")),
        models=html.escape(", ".join(photo_models) or w("none")),
        count=len(runs),
        runs=f" ({', '.join(map(code, runs[:5]))})" if runs else "",
    )
    if importlib.util.find_spec("convnet.analysis.zoo") is not None:
        measured += " " + w("imagenet.zoo", command=code("convnet zoo"))
    why = w("imagenet.why", command=code("convnet evaluate RUN --data DIR"))
    return Section(
        7,
        w("claim.7"),
        "convnet evaluate RUN_DIR --data IMAGENET_DIR",
        measured,
        "not measured here",
        why,
        lang=w.lang,
    )


def claim_depth(w: Words) -> Section:
    rows, present, missing = [], [], []
    for name, lecture_depth in LECTURE_DEPTHS.items():
        if name not in MODELS:
            missing.append(name)
            rows.append([name, lecture_depth, w("depth.not_registered"), ""])
            continue
        try:
            with torch.device("meta"):  # counts only: allocate no weights
                model = get_model(name, num_classes=1000)
            depth = traced_depth(model)
        except Exception as error:  # another family's model that fx cannot trace: say so
            untraced = w("depth.not_traceable", error=type(error).__name__)
            rows.append([name, lecture_depth, untraced, ""])
            continue
        present.append(depth == lecture_depth)
        rows.append([name, lecture_depth, depth, w.n(sum(p.numel() for p in model.parameters()))])
    verdict = "not measured here" if missing else _verdict(present)
    why = w("depth.why_missing", models=", ".join(missing)) if missing else w("depth.why")
    header = w.headers("network", "lecture_depth", "measured_depth", "parameters")
    return Section(
        8,
        w("claim.8"),
        "convnet summary resnet152 --input-size 3 224 224",
        w("depth.measured", count=len(present), total=len(LECTURE_DEPTHS)),
        verdict,
        why,
        None,
        table(header, rows, (0,)),
        w.lang,
    )
