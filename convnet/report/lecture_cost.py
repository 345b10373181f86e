"""The sections of `convnet report lecture` about what a CNN costs (claim 6, timed on this
machine: judged only when the machine was quiet and the rounds agree) and about ImageNet
(claim 7, which needs the user's own copy)."""

from __future__ import annotations

import html
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

from convnet.data.datasets import DATASETS
from convnet.engine.run import CONFIG_FILE
from convnet.experiments.cost import NOT_JUDGED, run_cost
from convnet.models import MODELS
from convnet.report import claims_plots
from convnet.report.lecture_words import Section, Words, code


def unjudged(reason: dict, w: Words) -> str:
    """Why a timing claim has no verdict, in w's language ("the machine was busy (…)")."""
    if reason["reason"] == "busy":
        load = w("cost.unknown") if reason["load"] is None else w.n(reason["load"], 1)
        share = reason.get("cpu_share")
        ran = "" if share is None else w("cost.ran", share=w.pct(share, 0))
        return w("cost.busy", load=load, cores=reason["cores"], ran=ran)
    if reason.get("unit") == "points":
        spread = w.points(reason["spread"], 0)
        limit = w.points(reason["limit"], 0)
    else:
        spread, limit = w.pct(reason["spread"], 0), w.pct(reason["limit"], 0)
    return w("cost.spread", spread=spread, limit=limit)


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
        larger = w.by_count(
            "cost.memory.heavier", len(heavier), len(mlps), models=", ".join(heavier)
        )
        why = w("cost.memory.why", ratio=w.n(ratio, 1), weights=larger)
    if "unjudged" in claim:
        why = f"{unjudged(claim['unjudged'], w)}; {why}"
    if "spread" in claim and "unjudged" not in claim:
        why += w("cost.spread_ok", spread=_spread(claim, w))
    return w(
        "cost.item",
        claim=w(f"cost.{kind}.claim"),
        measured=measured,
        verdict=w.verdict(claim["verdict"]),
        why=why,
    )


def _spread(claim: dict, w: Words) -> str:
    return (
        w.points(claim["spread"], 0)
        if claim["id"] == "convolution_share"
        else w.pct(claim["spread"], 0)
    )


def claim_cost(repeats: int, figures: Path, w: Words) -> Section:
    result = run_cost(
        ("lenet5", "mlp_60k", "mlp"), repeats_batch1=repeats, repeats_batch256=max(3, repeats // 5)
    )
    claims_plots.cost_bars(result, figures / "cost.png", lang=w.lang)
    verdicts = [c["verdict"] for c in result.claims]
    if NOT_JUDGED in verdicts:
        overall = NOT_JUDGED
    else:
        overall = verdicts[0] if len(set(verdicts)) == 1 else "depends"
    measured = "<ul>" + "".join(f"<li>{_cost_item(c, w)}</li>" for c in result.claims) + "</ul>"
    conditions = result.conditions
    why = w(
        "cost.why",
        device=result.device,
        precision=result.precision,
        threads=result.threads,
        clock=w(f"cost.clock.{'cpu' if conditions.cpu_share is not None else 'wall'}"),
        rounds=conditions.rounds,
        load=w.n(conditions.load or 0.0, 1),
        cores=conditions.cores,
    )
    if overall == NOT_JUDGED:
        timing = next(c for c in result.claims if "unjudged" in c)
        why = w("cost.why_unjudged", reason=unjudged(timing["unjudged"], w), conditions=why)
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


# Runs lie at most this deep under the runs folder (runs/<group>/<run>/config.json): a
# deeper walk of a folder such as /tmp or the home folder would be unbounded.
RUN_DEPTH = 3


def _runs_on(runs_root: Path, datasets: set[str]) -> list[str]:
    """The runs under `runs_root` (at most RUN_DEPTH folders down, 2,000 configurations)
    whose data set is one of `datasets`; a config.json that is not a run's is passed over."""
    if not runs_root.is_dir():
        return []
    paths = [
        p for depth in range(1, RUN_DEPTH + 1) for p in runs_root.glob("*/" * depth + CONFIG_FILE)
    ]
    found = []
    for path in sorted(paths)[:2000]:
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError, RecursionError):  # unreadable, not JSON, nested too deep
            continue
        if isinstance(config, dict) and config.get("dataset") in datasets:
            found.append(str(path.parent))
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
        measured += " " + w("imagenet.zoo", command=code("convnet zoo --plot chart.png"))
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
