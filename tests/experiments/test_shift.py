"""Claim 1, the shift count: by hand, and on real digits as docs/lecture.md gives them."""

import json

import pytest
import torch

from convnet.experiments.shift import count_changes
from tests.helpers.cli import cli


def test_shift_count_on_a_hand_made_binary_image():
    ink = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    ink[0, 0, 1:5, 3:5] = True  # a 2-wide, 4-tall bar: a 2-px left shift moves all 8 pixels
    ink[0, 0, 7, 1] = True  # a dot the shift pushes out of the frame
    counts = count_changes(ink, dx=-2)
    # The bar leaves 8 pixels (black→white) and covers 8 new ones (white→black); the dot
    # leaves 1 pixel and lands nowhere.
    assert counts.black_to_white.item() == 9
    assert counts.white_to_black.item() == 8
    assert counts.changed.item() == 17
    assert counts.ink.item() == 9


def test_shift_count_of_an_overlapping_stroke():
    ink = torch.zeros(1, 1, 5, 10, dtype=torch.bool)
    ink[0, 0, 2, 2:7] = True  # a horizontal stroke of 5: only its two ends change
    counts = count_changes(ink, dx=-2)
    assert (counts.black_to_white.item(), counts.white_to_black.item()) == (2, 2)


def test_shift_command_on_real_digits(mnist_dir, tmp_path, capsys):
    figure = tmp_path / "shift.png"
    result = json.loads(
        cli(
            capsys,
            "experiment",
            "shift",
            "--index",
            "7",
            "--pixels",
            "3",
            "--figure",
            str(figure),
            "--json",
        )
    )
    assert result["index"] == 7 and result["pixels"] == 3 and result["inputs"] == 1024
    assert result["changed"] == result["black_to_white"] + result["white_to_black"]
    assert result["test_set"]["count"] == 10_000
    assert result["test_set"]["min"] <= result["changed"] <= result["test_set"]["max"]
    assert figure.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("index", "label", "changed", "each_way"),
    [(0, "7", 80, 40), (3613, "0", 154, 77)],  # docs/lecture.md's figures; 3613 is the lecture's
)
def test_shift_command_gives_the_published_counts(
    mnist_dir, tmp_path, capsys, index, label, changed, each_way
):
    arguments = ["experiment", "shift", "--index", str(index), "--json"]
    result = json.loads(cli(capsys, *arguments, "--figure", str(tmp_path / "shift.png")))
    assert (result["label"], result["pixels"], result["changed"]) == (label, 2, changed)
    assert (result["black_to_white"], result["white_to_black"]) == (each_way, each_way)
    # Over all 10,000 test digits: 99.4 ± 18.7 (min 34, max 190); 154 = 77 + 77 is #3613's.
    test_set = result["test_set"]
    assert (round(test_set["mean"], 1), round(test_set["std"], 1)) == (99.4, 18.7)
    assert (test_set["min"], test_set["max"]) == (34, 190)
    closest = result["closest_to_lecture"]
    assert (closest["index"], closest["changed"], closest["black_to_white"]) == (3613, 154, 77)
