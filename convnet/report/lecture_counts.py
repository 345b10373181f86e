"""The sections of `convnet report lecture` that count rather than train: claim 2 (weight
sharing: parameters against connections, layer by layer), claim 4 (LeNet-5's numbers: the
paper's, the lecture's and every accounting that could give the lecture's) and claim 8
(depth). Each quantifying sentence is chosen from the rows of the table beside it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import torch

from convnet.analysis import lenet_counts
from convnet.analysis.summary import LENET5_SOURCES, matching_sources, summarize, traced_depth
from convnet.engine.run import load_run
from convnet.experiments.invariance import InvarianceResult
from convnet.experiments.shift import feature_map_shift
from convnet.models import MODELS, get_model
from convnet.report import claims_plots
from convnet.report.lecture_words import Section, Words, combined_verdict, table

# Claim 8: the networks and the depths the lecture names.
LECTURE_DEPTHS = {"alexnet": 8, "vgg19": 19, "googlenet": 22, "resnet152": 152}
# A layer shares its weights when it has at least this many connections per parameter.
SHARING_RATIO = 2.0


@dataclass
class LayerCount:
    """One row of claim 2's table: a layer's trainable parameters, connections and the
    positions of its output map (height × width; 1 for a 1×1 map or a vector)."""

    name: str
    parameters: int
    connections: int
    positions: int

    @property
    def shares(self) -> bool:
        return self.connections >= SHARING_RATIO * self.parameters


def layer_counts(model_name: str = "lenet5_1998") -> list[LayerCount]:
    """The layers of `model_name` that hold trainable parameters, as claim 2 tabulates."""
    rows = summarize(get_model(model_name), (1, 32, 32)).layers
    return [
        LayerCount(
            row.name.split(".")[-1],
            row.trainable_params,
            row.connections,
            row.output_shape[1] * row.output_shape[2] if len(row.output_shape) == 3 else 1,
        )
        for row in rows
        if row.trainable_params
    ]


def sharing_sentence(rows: list[LayerCount], moves: bool, w: Words) -> tuple[str, str]:
    """Claim 2's explanation from its table and its verdict: the map moves with the input
    (or not); which layers have fewer parameters than connections and by how much; which
    have as many, and why. Supported when the map moves and every layer whose output has
    more than one position shares its weights."""
    shared = [row for row in rows if row.shares]
    once = [row for row in rows if not row.shares]
    ratios = [row.connections / max(row.parameters, 1) for row in shared]
    parts = [w("sharing.moves" if moves else "sharing.does_not_move")]
    parts.append(
        w.by_count(
            "sharing.fewer",
            len(shared),
            len(rows),
            layers=w.listing(row.name.upper() for row in shared),
            ratios=w.range_of(ratios, w.n) if ratios else "",
        )
    )
    if once:
        single = all(row.positions == 1 for row in once)
        parts.append(
            w(
                "sharing.once_single" if single else "sharing.once",
                layers=w.listing(row.name.upper() for row in once),
            )
        )
    verdict = combined_verdict([moves, *(row.shares for row in rows if row.positions > 1)])
    return w("semicolon").join(parts), verdict


def claim_weight_sharing(
    result: InvarianceResult, digit: torch.Tensor, figures: Path, w: Words
) -> Section:
    cnn = result.pair[0]
    loaded = load_run(Path(next(v.run_dir for v in result.variants if v.label == cnn)))
    first_name, first_layer = next(iter(loaded.model.features.named_children()))
    measured_shift = feature_map_shift(first_layer, digit, loaded.spec.normalization, 2, first_name)
    claims_plots.feature_map_figure(measured_shift, figures / "feature_maps.png", lang=w.lang)
    rows = layer_counts()
    exact = measured_shift.max_difference <= 1e-4 * max(measured_shift.max_response, 1.0)
    difference = f"{measured_shift.max_difference:.1e}".replace(".", w.decimal)
    c1 = rows[0]
    measured = w(
        "sharing.measured",
        difference=difference,
        params=c1.parameters,
        response=w.n(measured_shift.max_response, 2),
        connections=c1.connections,
    )
    why, verdict = sharing_sentence(rows, exact, w)
    header = w.headers("paper_layer", "parameters", "connections", "positions", "per_parameter")
    cells = [
        [
            row.name.upper(),
            w.n(row.parameters),
            w.n(row.connections),
            w.n(row.positions),
            w.n(row.connections / max(row.parameters, 1)) + "×",
        ]
        for row in rows
    ]
    return Section(
        2,
        w("claim.2"),
        "convnet summary lenet5_1998",
        measured,
        verdict,
        why,
        "feature_maps.png",
        table(header, cells, (0,)),
        w.lang,
    )


# --- claim 4 ---------------------------------------------------------------------------


def _signed(fraction: float, w: Words) -> str:
    return ("+" if fraction >= 0 else "−") + w.pct(abs(fraction), 0)


def accounting_table(rows: list[lenet_counts.Accounting], w: Words) -> str:
    header = w.headers("accounting", "connections", "parameters", "from_lecture")
    cells = [
        [
            w(f"accounting.{row.key}"),
            w.n(row.connections),
            w.n(row.parameters),
            w(
                "accounting.differences",
                connections=_signed(row.differences()["connections"], w),
                parameters=_signed(row.differences()["parameters"], w),
            ),
        ]
        for row in rows
    ]
    return table(header, cells)


def accounting_sentences(rows: list[lenet_counts.Accounting], w: Words) -> str:
    """Which accounting comes closest to the lecture's pair (and whether it is close), and
    which figures to learn and why."""
    best = lenet_counts.closest(rows)
    differences = best.differences()
    close = best.distance() <= lenet_counts.CLOSE_ENOUGH
    closest = w(
        "lenet.closest_close" if close else "lenet.closest_none",
        total=len(rows),
        accounting=w(f"accounting.{best.key}"),
        connections=best.connections,
        parameters=best.parameters,
        connections_off=_signed(differences["connections"], w),
        parameters_off=_signed(differences["parameters"], w),
        limit=w.pct(lenet_counts.CLOSE_ENOUGH, 0),
    )
    paper = next(row for row in rows if row.key == "paper")
    modern = next(row for row in rows if row.key == "lenet5")
    learn = w(
        "lenet.learn",
        connections=paper.connections,
        params=paper.parameters,
        modern=modern.parameters,
    )
    return f"<p>{closest}</p><p>{learn}</p>"


def layer_name(name: str, w: Words) -> str:
    """C1, S2, F6 as the paper writes them; any other layer by the catalog's word for it."""
    return name.upper() if name[:1].isalpha() and name[1:].isdigit() else w(f"layer.{name}")


def depth_sentence(w: Words) -> str:
    """What "depth 5" and the paper's "7 layers" each count, from the two networks."""
    paper = lenet_counts.depth_counts(get_model("lenet5_1998"), (1, 32, 32))
    modern = lenet_counts.depth_counts(get_model("lenet5"), (1, 32, 32))
    return w(
        "lenet.depth",
        weight_layers=paper.weight_layers,
        weighted=w.listing(layer_name(name, w) for name in paper.weighted),
        layers=paper.layers,
        others=w.listing(layer_name(name, w) for name in paper.others),
        modern_weight_layers=modern.weight_layers,
        modern_layers=modern.layers,
    )


def claim_lenet(result: InvarianceResult, how: str, w: Words) -> Section:
    paper = summarize(get_model("lenet5_1998"), (1, 32, 32), "lenet5_1998")
    modern = summarize(get_model("lenet5"), (1, 32, 32), "lenet5")
    matches = matching_sources(paper)
    lecture = LENET5_SOURCES["the lecture"]
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
    published = LENET5_SOURCES["LeCun et al. 1998 (Proc. IEEE)"]
    why = w(
        "lenet.why" if structure else "lenet.why_structure",
        connections=published["connections"],
        params=published["trainable_params"],
    )
    layer_rows = [
        [r.name, "×".join(map(str, r.output_shape)), w.n(r.trainable_params), w.n(r.connections)]
        for r in paper.layers
    ]
    accounts = lenet_counts.accountings()
    extra = (
        table(w.headers("layer", "output", "parameters", "connections"), layer_rows, (0,))
        + f"<h3>{html.escape(w('lenet.accountings_title'))}</h3>"
        + accounting_table(accounts, w)
        + accounting_sentences(accounts, w)
        + f"<p>{depth_sentence(w)}</p>"
    )
    return Section(
        4,
        w("claim.4"),
        "convnet summary lenet5_1998",
        measured,
        "depends" if structure and not matches["the lecture"] else combined_verdict([structure]),
        why,
        None,
        extra,
        w.lang,
    )


# --- claim 8 ---------------------------------------------------------------------------


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
    verdict = "not measured here" if missing else combined_verdict(present)
    why = w("depth.why_missing", models=", ".join(missing)) if missing else w("depth.why")
    header = w.headers("network", "lecture_depth", "measured_depth", "parameters")
    measured = w.by_count("depth.measured", sum(present), len(LECTURE_DEPTHS), traced=len(present))
    return Section(
        8,
        w("claim.8"),
        "convnet summary resnet152 --input-size 3 224 224",
        measured,
        verdict,
        why,
        None,
        table(header, rows, (0,)),
        w.lang,
    )
