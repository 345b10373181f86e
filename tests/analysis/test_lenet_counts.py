"""Claim 4's accountings: the paper's totals recomputed, each variant's change visible in its
counts, the closest to the lecture's pair found, and what depth and "7 layers" count."""

from convnet.analysis import lenet_counts
from convnet.models import get_model


def test_the_paper_accounting_reproduces_the_published_totals():
    rows = {row.key: row for row in lenet_counts.accountings()}
    paper = rows["paper"]
    assert (paper.connections, paper.parameters) == (
        lenet_counts.PAPER["connections"],
        lenet_counts.PAPER["parameters"],
    )
    # Each variant changes what it says it changes, and only that.
    c3_full_extra = 16 * 6 * 25 + 16 - 1_516  # every C3 map reading all six S2 maps
    assert rows["full_c3"].parameters - paper.parameters == c3_full_extra
    assert rows["full_c3"].connections - paper.connections == 100 * c3_full_extra
    assert paper.connections - rows["no_output"].connections == 84 * 10  # the RBF's
    assert rows["linear_output"].parameters - paper.parameters == 84 * 10 + 10
    assert rows["sharing_layers"].parameters == 156 + 12 + 1_516 + 32
    assert rows["input_28"].connections < paper.connections
    assert rows["lenet5"].parameters == sum(p.numel() for p in get_model("lenet5").parameters())
    assert not rows["lenet4"].computed and rows["paper"].computed


def test_the_closest_accounting_is_the_one_with_the_smallest_larger_difference():
    rows = lenet_counts.accountings()
    best = lenet_counts.closest(rows)
    assert all(best.distance() <= row.distance() for row in rows)
    # Moving the target onto one accounting makes it the closest, at distance 0.
    target = {"connections": rows[3].connections, "parameters": rows[3].parameters}
    assert lenet_counts.closest(rows, target) is rows[3] and rows[3].distance(target) == 0
    assert best.differences()["connections"] == best.connections / 187_000 - 1


def test_depth_counts_weight_layers_and_the_paper_counts_every_layer():
    paper = lenet_counts.depth_counts(get_model("lenet5_1998"), (1, 32, 32))
    assert (paper.weight_layers, paper.layers) == (5, 7)
    assert paper.weighted == ["c1", "c3", "c5", "f6", "output"]
    assert paper.others == ["s2", "s4"]
    modern = lenet_counts.depth_counts(get_model("lenet5"), (1, 32, 32))
    assert (modern.weight_layers, modern.layers, modern.others) == (5, 7, ["s2", "s4"])
