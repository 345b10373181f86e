"""A verdict of the lecture report needs every network above the accuracy floor."""

import pytest


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
    from convnet.report.lecture_claims import ACCURACY_FLOOR, NOT_JUDGED, Section, gate

    assert ACCURACY_FLOOR == 0.97
    section = Section(1, "claim", "command", "measured", "supported", "why")
    gated = gate(section, _Accuracies(**accuracies), ("lenet5", "mlp"), "RETRAIN")
    assert (gated.verdict == "supported") is judged
    if not judged:
        assert gated.verdict == NOT_JUDGED and gated.why.endswith("run: RETRAIN")
        low = [label for label, value in accuracies.items() if value < 0.97]
        assert all(f"{label} {100 * accuracies[label]:.1f}%" in gated.why for label in low)
