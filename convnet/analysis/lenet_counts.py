"""Claim 4's numbers: which accounting of LeNet-5 could give the lecture's "about 187,000
connections and 14,000 parameters", beside the 340,908 connections and 60,000 trainable
parameters the paper publishes (LeCun et al. 1998, §II-B), and what "depth 5" and the
paper's "7 layers" each count.

Every computed accounting is a real network summarized by `convnet.analysis.summary` (the
counts `convnet summary` prints), LeNet-5 as published changed in one way the lecture's
figures could have come from: C3 reading every S2 map instead of Table I's 60 pairs, the
RBF output left out or replaced by a fully connected layer, MNIST's own 28×28 input (C5's
kernel shrunk to 4×4 to fit), connections counted without the biases (multiply-accumulates),
only the layers that share weights (C1–S4), and today's `lenet5`. Two predecessors are
listed with their published counts. The closest accounting is the one whose larger relative
difference from the lecture's two figures is smallest; none within CLOSE_ENOUGH means the
lecture's pair comes from no accounting tried here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from convnet.analysis.summary import WEIGHT_LAYERS, ModelSummary, summarize
from convnet.models.lenet import LeNet5Paper, PartialConv2d

LECTURE = {"connections": 187_000, "parameters": 14_000}
PAPER = {"connections": 340_908, "parameters": 60_000}  # LeCun et al. 1998, §II-B
CLOSE_ENOUGH = 0.10  # both figures within 10%
SHARING_LAYERS = ("c1", "s2", "c3", "s4")  # the layers whose outputs have many positions
# Published counts of LeNet-5's predecessors (no code here builds them: their connection
# tables are not published in full).
PUBLISHED = {
    # LeCun et al. 1989, "Backpropagation applied to handwritten zip code recognition",
    # Neural Computation 1(4), §5: 1,256 units, 64,660 connections, 9,760 parameters.
    "zip_code_1989": {"connections": 64_660, "parameters": 9_760},
    # LeCun et al. 1998, §III-C.7: LeNet-4, "about 260,000 connections and about 17,000
    # free parameters".
    "lenet4": {"connections": 260_000, "parameters": 17_000},
}


@dataclass
class Accounting:
    """One way of counting: its catalog key (lecture.accounting.<key>), its totals, and
    whether they were computed here or published."""

    key: str
    connections: int
    parameters: int
    computed: bool = True

    def differences(self, target: dict[str, int] = LECTURE) -> dict[str, float]:
        """Relative difference of each total from `target`'s (+0.05: 5% more)."""
        return {
            "connections": self.connections / target["connections"] - 1,
            "parameters": self.parameters / target["parameters"] - 1,
        }

    def distance(self, target: dict[str, int] = LECTURE) -> float:
        """The larger of the two relative differences, in size."""
        return max(abs(value) for value in self.differences(target).values())


def _paper(change: Callable[[LeNet5Paper], None] | None = None) -> LeNet5Paper:
    network = LeNet5Paper()
    if change is not None:
        change(network)
    return network


def _full_c3(network: LeNet5Paper) -> None:
    network.features.c3 = PartialConv2d(tuple(tuple(range(6)) for _ in range(16)), 6, 5)


def _linear_output(network: LeNet5Paper) -> None:
    network.head.output = nn.Linear(84, 10)


def _no_output(network: LeNet5Paper) -> None:
    network.head.output = nn.Identity()


def _small_c5(network: LeNet5Paper) -> None:
    network.features.c5 = nn.Conv2d(16, 120, 4)  # S4's maps are 4×4 on a 28×28 input


def _totals(summary: ModelSummary, layers: tuple[str, ...] = (), macs: bool = False) -> tuple:
    rows = [row for row in summary.layers if not layers or row.name.split(".")[-1] in layers]
    connections = sum(row.macs if macs else row.connections for row in rows)
    return connections, sum(row.trainable_params for row in rows)


def accountings() -> list[Accounting]:
    """Every accounting tried, the paper's own first (its totals are PAPER's)."""
    from convnet.models import get_model  # the registry, for today's lenet5

    size = (1, 32, 32)
    computed = {
        "paper": _totals(summarize(_paper(), size)),
        "full_c3": _totals(summarize(_paper(_full_c3), size)),
        "no_output": _totals(summarize(_paper(_no_output), size)),
        "linear_output": _totals(summarize(_paper(_linear_output), size)),
        "without_biases": _totals(summarize(_paper(), size), macs=True),
        "input_28": _totals(summarize(_paper(_small_c5), (1, 28, 28))),
        "sharing_layers": _totals(summarize(_paper(), size), SHARING_LAYERS),
        "sharing_layers_28": _totals(summarize(_paper(_small_c5), (1, 28, 28)), SHARING_LAYERS),
        "lenet5": _totals(summarize(get_model("lenet5"), size)),
    }
    rows = [Accounting(key, c, p) for key, (c, p) in computed.items()]
    rows += [
        Accounting(key, counts["connections"], counts["parameters"], computed=False)
        for key, counts in PUBLISHED.items()
    ]
    return rows


def closest(rows: list[Accounting], target: dict[str, int] = LECTURE) -> Accounting:
    return min(rows, key=lambda row: row.distance(target))


@dataclass
class DepthCounts:
    """What "depth 5" and the paper's "7 layers" count, for one network."""

    weight_layers: int  # convolution and fully connected layers on the longest path
    layers: int  # every layer that computes from the layer before: the paper's count
    weighted: list[str]  # the computing layers with weights (C1, C3, C5, F6, output)
    others: list[str]  # the computing layers depth leaves out (S2, S4 for LeNet-5)


def depth_counts(model: nn.Module, input_size: tuple[int, ...]) -> DepthCounts:
    """Its depth (weight layers, `convnet summary`'s) and its computing layers, which for
    LeNet-5 add the two subsampling layers: the paper counts them, as in 1998 they had
    trainable coefficients; today's max pooling has none, and depth leaves it out."""
    summary = summarize(model, input_size)
    modules = dict(model.named_modules())
    computing = [row for row in summary.layers if row.connections]
    weighted = {row.name for row in computing if isinstance(modules[row.name], WEIGHT_LAYERS)}
    return DepthCounts(
        weight_layers=int(summary.total["depth"] or 0),
        layers=len(computing),
        weighted=[row.name.split(".")[-1] for row in computing if row.name in weighted],
        others=[row.name.split(".")[-1] for row in computing if row.name not in weighted],
    )
