"""Counts in sentences take the noun in the number the count needs."""

import pytest

from convnet.wording import counted


@pytest.mark.parametrize(
    ("count", "words", "expected"),
    [
        (1, ("epoch",), "1 epoch"),
        (0, ("epoch",), "0 epochs"),
        (1200, ("training image",), "1,200 training images"),
        (1, ("process", "processes"), "1 process"),
        (2, ("process", "processes"), "2 processes"),
    ],
)
def test_counted(count, words, expected):
    assert counted(count, *words) == expected
