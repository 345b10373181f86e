"""Counts in sentences: "1 epoch", "3 epochs", "2 processes"."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """`count` and the noun in the number it takes, with thousands separated: counted(1,
    "epoch") is "1 epoch", counted(1200, "image") "1,200 images", counted(2, "process",
    "processes") "2 processes"."""
    return f"{count:,} {singular if count == 1 else plural or singular + 's'}"
