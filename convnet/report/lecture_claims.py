"""The sections of `convnet report lecture` that compare trained networks — claims 1, 3
and 5 — each measuring what it needs and returning the claim, the command, what was
measured, a figure and a verdict (the other claims: lecture_counts.py, lecture_cost.py).

Every sentence that quantifies is chosen from the numbers beside it (`Words.by_count`);
every network whose numbers enter a verdict must pass the accuracy gate; and what a table
shows that a reader would not expect (a share of the gap above 100%, an augmented network
worse than its plain twin) is said in a sentence of its own.
"""

from __future__ import annotations

import html
from pathlib import Path

from convnet.analysis.summary import summarize
from convnet.experiments.invariance import POOLING_KINDS, InvarianceResult, Variant
from convnet.experiments.shift import run_shift
from convnet.models import get_model
from convnet.report import claims_plots
from convnet.report.lecture_words import (
    ACCURACY_FLOOR,
    Section,
    Words,
    combined_verdict,
    gate,
    label_of,
    short_of,
    short_text,
    table,
)

# A network is "more robust" on a sweep when its mean accuracy over it is this much higher.
ROBUST_MARGIN = 0.02
# Within this of its clean accuracy across a whole sweep, a network is invariant to it.
INVARIANT_MARGIN = 0.05
# Claim 3: the sweeps about position and angle, and how far apart two poolings must be.
POOLING_SWEEPS = ("translate_x", "translate_y", "rotate")
# An augmented network this much worse than its plain twin (mean over a sweep, or clean
# accuracy) is flagged; a plain gap smaller than SMALL_GAP is too small to share out.
WORSE_MARGIN = 0.01
CLEAN_MARGIN = 0.002
SMALL_GAP = 0.01
# A test error that fell by more than this share in the last epoch was still falling.
STILL_FALLING = 0.10


def _robust(result: InvarianceResult, names: list[str], better: str, worse: str) -> list[bool]:
    return [
        result.mean_accuracy(n, better) - result.mean_accuracy(n, worse) > ROBUST_MARGIN
        for n in names
    ]


def _distortions(names: list[str], w: Words) -> str:
    return w.listing(w(f"distortion.{name}") for name in names)


def claim_shift(
    result: InvarianceResult, figures: Path, data_dir: Path | None, retrain: str, w: Words
) -> Section:
    shift = run_shift(data_dir=data_dir)
    claims_plots.shift_figure(shift, figures / "shift.png", lang=w.lang)
    cnn, mlp = result.pair
    curve = result.curve("translate_x")
    at = {level: curve.levels.index(level) for level in (0.0, -2.0, -4.0)}
    stats, near = shift.test_set, shift.closest_to_lecture
    names = [n for n in ("translate_x", "translate_y", "rotate", "scale") if _has(result, n)]
    fragile = _robust(result, names, cnn, mlp)
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
    why = w.by_count(
        "shift.why",
        sum(fragile),
        len(fragile),
        mlp=mlp,
        cnn=cnn,
        which=_distortions([n for n, f in zip(names, fragile, strict=True) if f], w),
        others=_distortions([n for n, f in zip(names, fragile, strict=True) if not f], w),
    )
    section = Section(
        1,
        w("claim.1"),
        "convnet experiment shift --pixels 2",
        measured,
        combined_verdict(fragile),
        why,
        "shift.png",
        lang=w.lang,
    )
    return gate(section, result, result.pair, retrain)


def _has(result: InvarianceResult, distortion: str) -> bool:
    return any(curve.distortion == distortion for curve in result.curves)


# --- claim 3 ---------------------------------------------------------------------------


def compare_poolings(pooled: list[float], convolved: list[float]) -> str:
    """ "ahead", "behind" or "level": ahead when the mean is more than ROBUST_MARGIN higher
    and every seed of `pooled` above every seed of `convolved` (beyond the seeds' spread)."""
    difference = sum(pooled) / len(pooled) - sum(convolved) / len(convolved)
    if difference > ROBUST_MARGIN and min(pooled) > max(convolved):
        return "ahead"
    if difference < -ROBUST_MARGIN and max(pooled) < min(convolved):
        return "behind"
    return "level"


def pooling_sentences(
    pooling: dict[str, dict[str, list[float]]], sweeps: list[str], w: Words
) -> tuple[list[str], list[bool]]:
    """For max and average pooling against the stride-2 convolution: one sentence each
    (chosen by how many sweeps it is ahead on) and whether it was ahead on each sweep."""
    sentences, ahead_all = [], []
    convolved = pooling["ablation"]
    for kind in ("plain", "average"):
        if kind not in pooling:
            continue
        outcomes = {n: compare_poolings(pooling[kind][n], convolved[n]) for n in sweeps}
        ahead = [n for n in sweeps if outcomes[n] == "ahead"]
        behind = [n for n in sweeps if outcomes[n] == "behind"]
        sentence = w.by_count(
            "pooling.ahead",
            len(ahead),
            len(sweeps),
            pooling=w(f"pooling.kind.{kind}"),
            which=_distortions(ahead, w),
            others=_distortions([n for n in sweeps if n not in ahead], w),
        )
        if behind:
            sentence += " " + w("pooling.behind", which=_distortions(behind, w))
        sentences.append(sentence)
        ahead_all += [outcomes[n] == "ahead" for n in sweeps]
    return sentences, ahead_all


def claim_pooling(result: InvarianceResult, retrain: str, w: Words) -> Section:
    cnn = result.pair[0]
    shapes = {
        row.name.split(".")[-1]: row.output_shape
        for row in summarize(get_model(cnn), (1, 32, 32)).layers
    }
    halves = shapes["s2"][1] * 2 == shapes["c1"][1] and shapes["s4"][1] * 2 == shapes["c3"][1]
    sizes = {name: "×".join(map(str, shapes[name][1:])) for name in ("c1", "s2", "c3", "s4")}
    measured = w("pooling.resolution", **sizes)
    pooling = result.pooling()
    sweeps = [name for name in POOLING_SWEEPS if _has(result, name)]
    command = "convnet experiment invariance --models lenet5 --variants plain,average,ablation"
    if "ablation" not in pooling or len(pooling) < 2 or not sweeps:
        return Section(
            3, w("claim.3"), command, measured, "depends", w("pooling.no_ablation"), lang=w.lang
        )
    seeds = min(len(values["clean"]) for values in pooling.values())
    measured += " " + w("pooling.seeds" if seeds > 1 else "pooling.one_seed", seeds=seeds)
    sentences, ahead = pooling_sentences(pooling, sweeps, w)
    header = [w("table.pooling"), w("table.clean"), *(w(f"distortion.{n}") for n in sweeps)]
    rows = [
        [w(f"pooling.kind.{kind}"), *(w.span(values[n]) for n in ["clean", *sweeps])]
        for kind, values in pooling.items()
    ]
    why = w("pooling.why", halves=w("yes" if halves else "no"), comparisons=" ".join(sentences))
    labels = [v.label for v in result.variants if v.model == cnn and v.kind in POOLING_KINDS]
    section = Section(
        3,
        w("claim.3"),
        command,
        measured,
        combined_verdict([halves, *ahead]) if halves else "not supported",
        why,
        "invariance.png",
        table(header, rows),
        w.lang,
    )
    return gate(section, result, labels, retrain)


# --- claim 5 ---------------------------------------------------------------------------


def training_state(errors: list[float]) -> str:
    """ "one_epoch", "falling" (the last epoch cut the test error by more than STILL_FALLING
    of it) or "settled", from a run's test error after each epoch."""
    if len(errors) < 2:
        return "one_epoch"
    before, after = errors[-2], errors[-1]
    return "falling" if after < before * (1 - STILL_FALLING) else "settled"


def _training_note(variant: Variant, w: Words) -> str:
    errors = variant.test_error_by_epoch
    state = training_state(errors)
    if state == "one_epoch":
        return w("training.one_epoch")
    return w(f"training.{state}", before=w.pct(errors[-2], 2), after=w.pct(errors[-1], 2))


def augmentation_sentences(result: InvarianceResult, w: Words) -> list[str]:
    """What augmentation did to the gap, distortion by distortion (chosen by each row's
    share of the gap closed), and every surprise flagged: an augmented network worse than
    its plain twin, an augmented CNN below the augmented MLP on clean digits."""
    cnn, mlp = result.pair
    augmented = {model: f"{model} + augmentation" for model in (cnn, mlp)}
    labels = {v.label: v for v in result.variants}
    if not all(label in labels for label in augmented.values()):
        return []
    short = short_of(result, augmented.values())
    if short:
        floor = w.pct(ACCURACY_FLOOR)
        return [w("augmentation.not_judged", short=short_text(result, short, w), floor=floor)]
    groups: dict[str, list[str]] = {"narrowed": [], "overtaken": [], "widened": [], "small": []}
    shares: list[float] = []
    for row in result.gaps():
        if abs(row["plain_gap"]) < SMALL_GAP or row.get("closed") is None:
            groups["small"].append(row["distortion"])
        elif row["closed"] > 1:
            groups["overtaken"].append(row["distortion"])
        elif row["closed"] > 0:
            groups["narrowed"].append(row["distortion"])
            shares.append(row["closed"])
        else:
            groups["widened"].append(row["distortion"])
    names = {"cnn": cnn, "mlp": mlp, "cnn_augmented": label_of(result, augmented[cnn], w)}
    names["mlp_augmented"] = label_of(result, augmented[mlp], w)
    parts = [
        w(
            f"augmentation.{group}",
            which=_distortions(found, w),
            shares=w.range_of(shares, lambda share: w.pct(share, 0)) if shares else "",
            **names,
        )
        for group, found in groups.items()
        if found
    ]
    sentences = [w("augmentation.lead", parts=w("semicolon").join(parts))]
    for model in (cnn, mlp):
        losses = {
            curve.distortion: result.mean_accuracy(curve.distortion, model)
            - result.mean_accuracy(curve.distortion, augmented[model])
            for curve in result.curves
        }
        worse = [(name, loss) for name, loss in losses.items() if loss > WORSE_MARGIN]
        if worse:
            sentences.append(
                w(
                    "flag.worse",
                    augmented=html.escape(label_of(result, augmented[model], w)),
                    plain=model,
                    which=_distortions([name for name, _ in worse], w),
                    points=w.points(max(difference for _, difference in worse)),
                )
            )
    pairs = [(augmented[cnn], cnn), (augmented[mlp], mlp), (augmented[cnn], augmented[mlp])]
    for first, second in pairs:
        ahead, behind = result.clean_accuracy(first), result.clean_accuracy(second)
        if behind - ahead > CLEAN_MARGIN:
            sentences.append(
                w(
                    "flag.clean",
                    first=html.escape(label_of(result, first, w)),
                    second=html.escape(label_of(result, second, w)),
                    first_accuracy=w.pct(ahead, 2),
                    second_accuracy=w.pct(behind, 2),
                    training=_training_note(labels[first], w),
                )
            )
    return sentences


def claim_invariance(result: InvarianceResult, retrain: str, w: Words) -> Section:
    cnn, mlp = result.pair
    clean = result.clean_accuracy(cnn)
    rows, robust, invariant, worst = [], [], [], {}
    names = [curve.distortion for curve in result.curves]
    for curve in result.curves:
        name, worst[curve.distortion] = curve.distortion, min(curve.accuracy[cnn])
        robust.append(
            result.mean_accuracy(name, cnn) - result.mean_accuracy(name, mlp) > ROBUST_MARGIN
        )
        invariant.append(clean - worst[name] <= INVARIANT_MARGIN)
        gap = next(g for g in result.gaps() if g["distortion"] == name)
        rows.append(
            [
                w(f"distortion.{name}"),
                w.pct(result.mean_accuracy(name, cnn)),
                w.pct(result.mean_accuracy(name, mlp)),
                w.pct(worst[name]),
                ("+" if gap["plain_gap"] >= 0 else "") + w.n(100 * gap["plain_gap"], 1),
                "" if gap.get("closed") is None else w.pct(gap["closed"], 0),
            ]
        )
    verdict = "supported" if all(invariant) else "depends" if all(robust) else None
    falls = [n for n, held in zip(names, invariant, strict=True) if not held]
    measured = (
        w.by_count(
            "invariance.robust",
            sum(robust),
            len(robust),
            cnn=cnn,
            mlp=mlp,
            which=_distortions([n for n, r in zip(names, robust, strict=True) if r], w),
            others=_distortions([n for n, r in zip(names, robust, strict=True) if not r], w),
        )
        + " "
        + w.by_count(
            "invariance.invariant",
            sum(invariant),
            len(invariant),
            clean=w.pct(clean),
            which=_distortions([n for n, held in zip(names, invariant, strict=True) if held], w),
            others=_distortions(falls, w),
            worst=w.range_of([worst[n] for n in falls], w.pct) if falls else "",
        )
    )
    header = [
        w("table.distortion"),
        w("table.mean", model=cnn),
        w("table.mean", model=mlp),
        w("table.worst", model=cnn),
        w("table.gap"),
        w("table.gap_closed"),
    ]
    why = (
        w("invariance.why_falls", cnn=cnn, mlp=mlp, which=_distortions(falls, w))
        if falls
        else w("invariance.why_invariant", cnn=cnn)
    )
    paragraphs = "".join(f"<p>{sentence}</p>" for sentence in augmentation_sentences(result, w))
    section = Section(
        5,
        w("claim.5"),
        "convnet experiment invariance --models lenet5,mlp",
        measured,
        verdict or combined_verdict(robust),
        why,
        "invariance.png",
        table(header, rows) + paragraphs,
        w.lang,
    )
    return gate(section, result, result.pair, retrain)
