"""The page's explanations: Grad-CAM on the CNN and input saliency on the ordinary network,
asked for through the server's API with a LeNet-5 trained on all of MNIST for an epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from convnet.serve.app import create_app
from convnet.serve.models import prepare_models
from tests.helpers.serve import TestClient, post_json, quick_runs


def heat_near_ink(digit: np.ndarray, reach: int = 2) -> np.ndarray:
    """True within `reach` px (a square) of the digit's ink (pixels above half brightness)."""
    ink = torch.from_numpy(digit > 127).float()[None, None]
    return (F.max_pool2d(ink, 2 * reach + 1, stride=1, padding=reach)[0, 0] > 0).numpy()


@pytest.fixture(scope="module")
def trained_client(mnist_dir, trained_run, mnist_test, tmp_path_factory):
    """The page's models with a LeNet-5 trained on all of MNIST for an epoch: the quick run's
    2,000 images leave it too unsure of its answer for its explanations to mean much."""
    models = prepare_models(
        [trained_run[0], quick_runs(tmp_path_factory)["mlp"]], runs_root=Path("nowhere"), log=print
    )
    return TestClient(create_app(models, mnist_test))


EXPLAINED_DIGITS = 10  # the first test digits


def test_predict_says_where_each_network_looked(trained_client, mnist_test):
    """Grad-CAM on the CNN's C3 and the ordinary network's input saliency, on the 28×28 grid
    of the pixels shown: values in [0, 1], their centre of mass, the class explained, and
    their heat on the digit: the share within 2 px of the ink at least 1.5 times that
    region's share of the picture, over the first test digits."""
    shares, areas = {"cnn": [], "ordinary": []}, []
    for index in range(EXPLAINED_DIGITS):
        digit = mnist_test.images[index].numpy()
        result = post_json(trained_client, {"pixels": digit.tolist()}).json()
        explanations = result["explanations"]
        assert {role: (e["method"], e["layer"]) for role, e in explanations.items()} == {
            "cnn": ("gradcam", "features.c3"),
            "ordinary": ("saliency", None),
        }
        near = heat_near_ink(digit)
        areas.append(near.mean())
        for role, explanation in explanations.items():
            heat = np.array(explanation["data"])
            assert explanation["shape"] == [28, 28] and heat.shape == (28, 28)
            assert heat.min() >= 0 and 0.5 < heat.max() <= 1
            rows, columns = np.indices(heat.shape)
            centre = [(heat * rows).sum() / heat.sum(), (heat * columns).sum() / heat.sum()]
            assert np.allclose(explanation["centre"], centre, atol=1e-3)
            top = next(p for p in result["predictions"] if p["role"] == role)["top"][0]
            assert explanation["target"] == top["index"]
            shares[role].append(heat[near].sum() / heat.sum())
    for role, share in shares.items():
        assert np.mean(share) >= 1.5 * np.mean(areas), (role, share, areas)


def test_the_cnn_map_moves_with_the_digit(trained_client, mnist_test):
    """Shift each digit 2 px (S2's stride, so C3's maps move by whole cells) each way along
    each axis: the CNN's heat follows it and the ordinary network's stays where it was.
    Measured as the centre of mass's movement along the shift, as a fraction of the shift,
    averaged: the CNN's moves by at least 0.3 of it, the ordinary network's by less than
    0.15 either way. Not by the whole shift: Grad-CAM weighs C3's maps by gradients from
    C5 and F6, which see positions, so the heat's emphasis shifts between strokes too
    (measured with LeNet-5 trained for an epoch: about 0.5–0.7 of the shift; the ordinary
    network's 0.0)."""
    shift = 2
    moved_by = {"cnn": [], "ordinary": []}  # movement along the shift, as a fraction of it
    for index in range(EXPLAINED_DIGITS):
        digit = mnist_test.images[index].numpy()
        still = post_json(trained_client, {"pixels": digit.tolist()}).json()["explanations"]
        for shift_x, shift_y in ((shift, 0), (-shift, 0), (0, shift), (0, -shift)):
            moved = post_json(
                trained_client, {"pixels": digit.tolist()}, shift_x=shift_x, shift_y=shift_y
            ).json()["explanations"]
            for role, fractions in moved_by.items():
                change = np.subtract(moved[role]["centre"], still[role]["centre"])
                fractions.append(np.dot(change, [shift_y, shift_x]) / shift**2)
    print({role: np.round(np.mean(fractions), 2) for role, fractions in moved_by.items()})
    assert np.mean(moved_by["cnn"]) >= 0.3, moved_by["cnn"]
    assert abs(np.mean(moved_by["ordinary"])) < 0.15, moved_by["ordinary"]
