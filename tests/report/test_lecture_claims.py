"""The lecture report's sentences follow from their numbers: change the numbers and the
sentence changes (issue 30), in English and Korean; and a verdict needs every network in it
above the accuracy floor."""

import re
from dataclasses import replace

import pytest

from convnet.experiments.invariance import Curve, InvarianceResult, Variant
from convnet.i18n import text
from convnet.report.lecture_claims import (
    augmentation_sentences,
    claim_invariance,
    compare_poolings,
    pooling_sentences,
    training_state,
)
from convnet.report.lecture_counts import layer_counts, sharing_sentence
from convnet.report.lecture_words import (
    ACCURACY_FLOOR,
    NOT_JUDGED,
    Section,
    Words,
    gate,
    quantity,
)


class _Accuracies:
    """What `gate` asks of an invariance result: each network's clean accuracy."""

    variants = ()

    def __init__(self, **accuracy: float):
        self.accuracy = accuracy

    def clean_accuracy(self, label: str) -> float:
        return self.accuracy[label]


@pytest.mark.parametrize(
    "accuracies, judged",
    [
        ({"lenet5": 0.99, "mlp": 0.975}, True),
        ({"lenet5": 0.99, "mlp": 0.969}, False),
        ({"lenet5": 0.20, "mlp": 0.98}, False),
    ],
)
def test_a_verdict_needs_every_network_above_the_floor(accuracies, judged):
    assert ACCURACY_FLOOR == 0.97
    section = Section(1, "claim", "command", "measured", "supported", "why")
    gated = gate(section, _Accuracies(**accuracies), ("lenet5", "mlp"), "RETRAIN")
    assert (gated.verdict == "supported") is judged
    if not judged:
        assert gated.verdict == NOT_JUDGED and gated.why.endswith("run: RETRAIN")
        low = [label for label, value in accuracies.items() if value < 0.97]
        assert all(f"{label} {100 * accuracies[label]:.1f}%" in gated.why for label in low)


@pytest.mark.parametrize(
    ("count", "total", "expected"),
    [(4, 4, "all"), (3, 4, "most"), (2, 4, "some"), (1, 3, "some"), (0, 4, "none")],
)
def test_the_quantity_a_sentence_uses_is_counted(count, total, expected):
    assert quantity(count, total) == expected


# --- claim 2: parameters against connections, layer by layer ---------------------------


def test_claim_2_says_which_layers_share_from_its_table():
    english, korean = Words("en"), Words("ko")
    rows = layer_counts()
    assert [row.name for row in rows] == ["c1", "s2", "c3", "s4", "c5", "f6"]
    why, verdict = sharing_sentence(rows, True, english)
    assert "in C1, S2, C3 and S4 there are 62–784× fewer parameters than connections" in why
    assert "in C5 and F6 there are as many parameters as connections" in why
    assert "every layer" not in why and verdict == "supported"
    assert (
        "C1, S2, C3, S4에서는 파라미터가 연결보다 62–784배 적다"
        in sharing_sentence(rows, True, korean)[0]
    )

    # C5 on a larger input: 4 positions, each weight used 4 times — it shares too.
    wider = [
        replace(row, positions=4, connections=4 * row.connections) if row.name == "c5" else row
        for row in rows
    ]
    why, _ = sharing_sentence(wider, True, english)
    assert "in C1, S2, C3, S4 and C5 there are" in why and "in F6 there are as many" in why

    # Every layer sharing: the sentence may now say "every".
    shared = [replace(row, positions=2, connections=2 * row.connections) for row in rows]
    assert sharing_sentence(shared, True, english)[0].startswith(
        "the feature map moves with the input (to rounding error); every layer has fewer"
    )

    # A layer with many positions that does not share: the claim no longer holds.
    unshared = [
        replace(row, parameters=row.connections) if row.name == "c3" else row for row in rows
    ]
    why, verdict = sharing_sentence(unshared, True, english)
    assert "only in C1, S2 and S4 are there fewer parameters" in why and verdict == "depends"
    assert "in C3, C5 and F6 there are as many parameters as connections: each weight" in why
    assert sharing_sentence(rows, False, english)[1] == "depends"  # the map did not move


# --- claim 3: pooling against the stride-2 convolution, over seeds --------------------


def test_claim_3_counts_a_pooling_ahead_only_beyond_the_seeds_spread():
    assert compare_poolings([0.80, 0.82, 0.81], [0.70, 0.72, 0.71]) == "ahead"
    assert compare_poolings([0.80, 0.82, 0.69], [0.70, 0.72, 0.71]) == "level"  # overlap
    assert compare_poolings([0.715, 0.72], [0.70, 0.705]) == "level"  # under 2 points
    assert compare_poolings([0.60, 0.61], [0.70, 0.72]) == "behind"

    sweeps = ["translate_x", "translate_y", "rotate"]
    ahead = {name: [0.80, 0.81, 0.82] for name in sweeps}
    convolved = {name: [0.70, 0.71, 0.72] for name in sweeps}
    pooling = {"plain": ahead, "average": dict(ahead), "ablation": convolved}
    sentences, results = pooling_sentences(pooling, sweeps, Words("en"))
    assert results == [True] * 6
    assert sentences[0].startswith("max pooling is ahead of the stride-2 convolution on all 3")
    pooling["average"] = {**ahead, "rotate": [0.60, 0.61, 0.62]}
    sentences, results = pooling_sentences(pooling, sweeps, Words("en"))
    assert results == [True, True, True, True, True, False]
    assert sentences[1].startswith("average pooling is ahead of the stride-2 convolution on 2 of")
    assert "not on rotation. It is behind it on rotation." in sentences[1]
    korean, _ = pooling_sentences(pooling, sweeps, Words("ko"))
    assert (
        "평균 풀링은 변환 3가지 중 2가지" in korean[1] and "회전에서는 오히려 뒤진다" in korean[1]
    )


# --- claim 5: what augmentation did to the gap, and the surprises flagged -------------


def made_up_result(clean_cnn_augmented: float = 0.99, errors=(0.02, 0.019)) -> InvarianceResult:
    """lenet5 and mlp, plainly and augmented, over two sweeps with made-up accuracies:
    augmentation narrows the shift gap and overturns the noise gap."""
    labels = ("lenet5", "mlp", "lenet5 + augmentation", "mlp + augmentation")
    variants = [
        Variant(label, label.split()[0], "augmented" if "+" in label else "plain", {})
        for label in labels
    ]
    variants[2].test_error_by_epoch = list(errors)
    shift = {
        "lenet5": [0.90, 0.99, 0.90],
        "mlp": [0.60, 0.98, 0.60],
        "lenet5 + augmentation": [0.97, clean_cnn_augmented, 0.97],
        "mlp + augmentation": [0.90, 0.985, 0.90],
    }
    noise = {
        "lenet5": [0.99, 0.95, 0.90],
        "mlp": [0.98, 0.90, 0.80],
        "lenet5 + augmentation": [0.99, 0.85, 0.70],
        "mlp + augmentation": [0.985, 0.90, 0.85],
    }
    curves = [
        Curve("translate_x", "pixels", [-2.0, 0.0, 2.0], shift),
        Curve("noise", "sigma", [0.0, 0.3, 0.6], noise),
    ]
    return InvarianceResult({}, variants, curves, 100, 1.0, pair=("lenet5", "mlp"))


def test_claim_5_explains_a_share_above_100_percent_and_flags_a_worse_network():
    sentences = augmentation_sentences(made_up_result(), Words("en"))
    lead = sentences[0]
    assert "narrows the gap on horizontal shift, closing 76% of it" in lead
    assert "closes the whole gap and more on noise: there the augmented mlp beats" in lead
    assert "above 100%" in lead and "part of the gap" not in lead
    assert sentences[1].startswith("Flagged, not explained by this experiment: lenet5 + ")
    assert "is worse than plain lenet5 on noise (by up to 10.0 points)" in sentences[1]
    assert len(sentences) == 2  # no clean-accuracy surprise: nothing more is flagged
    korean = augmentation_sentences(made_up_result(), Words("ko"))
    assert "잡음에서는 격차가 모두 사라지고 뒤집혔다" in korean[0]


def test_claim_5_flags_an_augmented_cnn_below_the_augmented_mlp_and_checks_its_training():
    falling = augmentation_sentences(made_up_result(0.975, (0.04, 0.025)), Words("en"))
    below = [s for s in falling if "less accurate on clean digits than mlp + augmentation" in s]
    assert len(below) == 1 and "(97.50% against 98.50%)" in below[0]
    assert "still falling in its last epoch (4.00% → 2.50%): it is likely undertrained" in below[0]
    settled = augmentation_sentences(made_up_result(0.975, (0.026, 0.025)), Words("en"))
    assert any("had settled by its last epoch (2.60% → 2.50%)" in s for s in settled)
    assert training_state([0.1]) == "one_epoch"


def test_claim_5_gives_no_augmentation_sentence_for_an_undertrained_network():
    result = made_up_result()
    for curve in result.curves:
        curve.accuracy["mlp + augmentation"] = [0.5, 0.5, 0.5]
    (sentence,) = augmentation_sentences(result, Words("en"))
    assert sentence.startswith("Augmentation's effect is not judged: mlp + augmentation 50.0%")
    assert text("ko", "lecture.augmentation.not_judged").startswith("데이터 증강의 효과는")


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_claim_5_fills_every_sentence_from_its_table(lang):
    result = made_up_result()
    section = claim_invariance(result, "RETRAIN", Words(lang))
    page = section.measured + section.why + section.extra
    assert re.search(r"\{\w+\}", page) is None, page
    assert section.verdict == "depends"  # more robust on both sweeps, invariant on neither
    if lang == "en":
        assert "lenet5 keeps more accuracy than mlp" in section.measured
        assert "on <b>all 2</b> distortions" in section.measured
        assert "at worst it falls to 90.0%." in section.measured
        assert section.why.endswith("on horizontal shift and noise")
    # Made invariant to noise: the sentences now name the one sweep it falls on.
    result.curves[1].accuracy["lenet5"] = [0.99, 0.985, 0.98]
    section = claim_invariance(result, "RETRAIN", Words(lang))
    assert re.search(r"\{\w+\}", section.measured + section.why) is None
    if lang == "en":
        assert "only on noise; on horizontal shift it falls further, to 90.0%" in section.measured


def test_claim_7_finds_imagenet_runs_and_passes_over_other_config_files(tmp_path):
    """Runs found at most three folders down; a config.json that is a list, nested too deep
    to parse, or not JSON at all is not a run's and is passed over, not a traceback."""
    from convnet.report.lecture_cost import _runs_on

    def config(relative: str, text: str) -> None:
        path = tmp_path / relative / "config.json"
        path.parent.mkdir(parents=True)
        path.write_text(text)

    config("a", '{"dataset": "imagenet"}')
    config("group/b", '{"dataset": "imagenet"}')
    config("group/c", '{"dataset": "mnist"}')
    config("x/y/z/too-deep", '{"dataset": "imagenet"}')
    config("list", "[1, 2]")
    config("nested", "[" * 100_000 + "]" * 100_000)
    config("broken", "{not json")
    assert _runs_on(tmp_path, {"imagenet"}) == [str(tmp_path / "a"), str(tmp_path / "group/b")]


def test_pages_in_one_folder_keep_their_own_figures(tmp_path):
    from convnet.report.lecture import figures_folder

    assert figures_folder(tmp_path / "lecture.html") == tmp_path / "lecture_figures"
    assert figures_folder(tmp_path / "lecture-ko.html") == tmp_path / "lecture-ko_figures"
