"""What /api/predict tells of the CNN's insides lets the page recompute its cells: each
pooling cell from its window (max, average, the 1998 subsampling), each C3 cell from the S2
maps its connection table names, F6 and the output scores; and each layer's receptive field.
Untrained networks (milliseconds to build): the arithmetic does not depend on training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convnet.engine.run import LoadedModel
from convnet.models import get_model, get_model_spec
from convnet.models.lenet import C3_CONNECTION_TABLE
from convnet.serve.inference import View, look
from convnet.serve.models import CNN, ORDINARY, ServedModel, ServedModels

SQUASH = {
    "relu": lambda x: np.maximum(x, 0),
    "scaled_tanh": lambda x: 1.7159 * np.tanh(2 / 3 * x),
    "identity": lambda x: x,
}
TOLERANCE = 2e-3  # the reply's values are rounded to 4 decimals; a C3 cell sums 150 products


def reply_for(name: str, digit: torch.Tensor, **config) -> dict:
    torch.manual_seed(0)
    served = []
    for role, model_name, options in ((CNN, name, config), (ORDINARY, "mlp", {})):
        model = get_model(model_name, num_classes=10, **options).eval()
        loaded = LoadedModel(model_name, get_model_spec(model_name), model, tuple("0123456789"))
        served.append(ServedModel(role, loaded, "untrained, for tests"))
    return look(ServedModels(*served), digit, View())


def windows(maps: np.ndarray, size: int, stride: int) -> np.ndarray:
    """(maps, rows, columns, size, size): each output cell's input window."""
    view = np.lib.stride_tricks.sliding_window_view(maps, (size, size), axis=(1, 2))
    return view[:, ::stride, ::stride]


@pytest.mark.parametrize(
    ("name", "config", "kind"),
    [
        ("lenet5", {}, "max"),
        ("lenet5", {"pooling": "avg"}, "average"),
        ("lenet5_1998", {}, "subsampling"),
    ],
)
def test_pooling_cells_come_from_their_windows(mnist_test, name, config, kind):
    reply = reply_for(name, mnist_test.images[0], **config)
    anatomy, maps = reply["anatomy"], reply["feature_maps"]
    layers = {layer["key"]: layer for layer in anatomy["layers"]}
    for pooled, source in (("s2", "c1"), ("s4", "c3")):
        assert layers[pooled]["kind"] == kind and layers[pooled]["kernel"] == [2, 2]
        window = windows(np.array(maps[source]["data"]), 2, 2)
        if kind == "max":
            made = window.max(axis=(-1, -2))
        elif kind == "average":
            made = window.mean(axis=(-1, -2))
        else:
            weights = np.array(anatomy["pooling"][pooled]["weight"])[:, None, None]
            bias = np.array(anatomy["pooling"][pooled]["bias"])[:, None, None]
            made = window.sum(axis=(-1, -2)) * weights + bias
        made = SQUASH[layers[pooled]["activation"]](made)
        assert np.abs(made - np.array(maps[pooled]["data"])).max() < TOLERANCE


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998"])
def test_c3_cells_are_sums_over_the_maps_their_table_names(mnist_test, name):
    reply = reply_for(name, mnist_test.images[1])
    c3, maps = reply["anatomy"]["c3"], reply["feature_maps"]
    expected = [list(range(6))] * 16 if name == "lenet5" else [list(s) for s in C3_CONNECTION_TABLE]
    assert c3["sources"] == expected
    s2 = windows(np.array(maps["s2"]["data"]), 5, 1)  # (6, 10, 10, 5, 5)
    for output, sources in enumerate(c3["sources"]):
        total = c3["bias"][output] + sum(
            (s2[source] * np.array(kernel)).sum(axis=(-1, -2))
            for source, kernel in zip(sources, c3["weights"][output], strict=True)
        )
        made = SQUASH[c3["activation"]](total)
        assert np.abs(made - np.array(maps["c3"]["data"][output])).max() < TOLERANCE


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998"])
def test_f6_and_the_output_scores_give_the_probabilities(mnist_test, name):
    reply = reply_for(name, mnist_test.images[2])
    head = reply["head"]
    assert len(head["f6"]) == 84 and len(head["output"]) == 10
    assert reply["anatomy"]["output"] == {"lenet5": "linear", "lenet5_1998": "rbf"}[name]
    scores = np.array(head["output"])
    softmax = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
    probabilities = next(p for p in reply["predictions"] if p["role"] == "cnn")["probabilities"]
    assert np.abs(softmax - np.array(probabilities)).max() < 1e-3
    assert math.isclose(sum(probabilities), 1, abs_tol=1e-3)


def test_each_layer_says_its_window_and_receptive_field(mnist_test):
    layers = reply_for("lenet5", mnist_test.images[0])["anatomy"]["layers"]
    assert [
        (layer["key"], layer["field"]["size"][0], layer["field"]["step"][0]) for layer in layers
    ] == [
        ("c1", 5, 1),
        ("s2", 6, 2),
        ("c3", 14, 2),
        ("s4", 16, 4),
        ("c5", 32, 4),
    ]
    assert layers[0]["activation"] == "relu" and layers[1]["stride"] == [2, 2]
