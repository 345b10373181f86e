"""Claim 1: shifting a digit two pixels left changes many of an ordinary network's inputs.

The lecture's figure binarizes a digit, shifts it two pixels left and counts the inputs
that change: 154, of which 77 go black→white and 77 white→black. Drawn as on paper (ink
black, background white), black→white is ink that the shift removed from a pixel and
white→black is ink that it brought. We count both on one real MNIST test digit and on
every test digit, in the 32×32 field (1,024 inputs) that `mlp` and `lenet5` read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from convnet.data.datasets import load_dataset
from convnet.data.distortions import translate
from convnet.data.transforms import to_model_input
from convnet.errors import UserError

LECTURE_CHANGED, LECTURE_BLACK_TO_WHITE, LECTURE_WHITE_TO_BLACK = 154, 77, 77
INPUT_SIZE = (1, 32, 32)  # LeCun et al. 1998's 32×32 input field (§III-A)


def binarize(images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Ink (True) where the grey value in [0, 1] reaches `threshold`."""
    return images >= threshold


@dataclass
class ShiftCounts:
    """Inputs that a shift changes, per image: (N,) tensors of counts."""

    changed: torch.Tensor
    black_to_white: torch.Tensor  # ink before, background after
    white_to_black: torch.Tensor  # background before, ink after
    ink: torch.Tensor  # ink pixels before the shift


def count_changes(ink: torch.Tensor, dx: int, dy: int = 0) -> ShiftCounts:
    """Count the binary inputs (N, 1, H, W) that change when shifted by (dx, dy) pixels."""
    shifted = translate(ink.float(), dx, dy) > 0.5
    removed = (ink & ~shifted).flatten(1).sum(1)
    added = (~ink & shifted).flatten(1).sum(1)
    return ShiftCounts(removed + added, removed, added, ink.flatten(1).sum(1))


@dataclass
class ShiftResult:
    index: int
    label: str
    pixels: int
    threshold: float
    inputs: int  # inputs of the network (32 × 32)
    changed: int
    black_to_white: int
    white_to_black: int
    ink_pixels: int
    test_set: dict  # mean, std, median, min, max of `changed` over all test digits
    closest_to_lecture: dict  # the test digit whose count is nearest the lecture's 154
    original: torch.Tensor = field(repr=False)  # (H, W) bool
    shifted: torch.Tensor = field(repr=False)
    all_changed: torch.Tensor = field(repr=False)  # (N,) counts over the test set

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "label": self.label,
            "pixels": self.pixels,
            "direction": "left",
            "threshold": self.threshold,
            "inputs": self.inputs,
            "changed": self.changed,
            "black_to_white": self.black_to_white,
            "white_to_black": self.white_to_black,
            "ink_pixels": self.ink_pixels,
            "changed_fraction": round(self.changed / self.inputs, 6),
            "test_set": self.test_set,
            "closest_to_lecture": self.closest_to_lecture,
            "lecture": {
                "changed": LECTURE_CHANGED,
                "black_to_white": LECTURE_BLACK_TO_WHITE,
                "white_to_black": LECTURE_WHITE_TO_BLACK,
                "pixels": 2,
            },
        }


def run_shift(
    index: int = 0, pixels: int = 2, threshold: float = 0.5, data_dir: Path | None = None
) -> ShiftResult:
    """Shift test digit `index` (and every other test digit) `pixels` to the left."""
    if pixels < 0:
        raise UserError(f"--pixels must be at least 0 (the shift goes left), not {pixels}.")
    if not 0 < threshold < 1:
        raise UserError(f"--threshold must be between 0 and 1, not {threshold}.")
    test = load_dataset("mnist", "test", data_dir)
    if not 0 <= index < len(test):
        raise UserError(f"--index must be between 0 and {len(test) - 1}, not {index}.")
    ink = binarize(to_model_input(test.images, INPUT_SIZE), threshold)
    counts = count_changes(ink, -pixels)
    changed = counts.changed.float()
    nearest = int((counts.changed - LECTURE_CHANGED).abs().argmin())
    return ShiftResult(
        index=index,
        label=test.class_names[int(test.labels[index])],
        pixels=pixels,
        threshold=threshold,
        inputs=ink[0].numel(),
        changed=int(counts.changed[index]),
        black_to_white=int(counts.black_to_white[index]),
        white_to_black=int(counts.white_to_black[index]),
        ink_pixels=int(counts.ink[index]),
        test_set={
            "count": len(changed),
            "mean": round(changed.mean().item(), 3),
            "std": round(changed.std().item(), 3),
            "median": changed.median().item(),
            "min": int(changed.min()),
            "max": int(changed.max()),
            "mean_fraction": round(changed.mean().item() / ink[0].numel(), 6),
        },
        closest_to_lecture={
            "index": nearest,
            "label": test.class_names[int(test.labels[nearest])],
            "changed": int(counts.changed[nearest]),
            "black_to_white": int(counts.black_to_white[nearest]),
            "white_to_black": int(counts.white_to_black[nearest]),
        },
        original=ink[index, 0],
        shifted=translate(ink[index : index + 1].float(), -pixels)[0, 0] > 0.5,
        all_changed=counts.changed,
    )


@dataclass
class FeatureMapShift:
    """Claim 2 measured: a convolution layer's map of a shifted digit is its map of the
    digit, shifted the same way — one set of weights looks for its feature everywhere."""

    layer: str
    pixels: int
    max_difference: float  # largest |map(shift(x)) − shift(map(x))| where both are defined
    max_response: float  # for scale: the largest |map(x)|
    digit: torch.Tensor = field(repr=False)  # (H, W) in [0, 1]
    shifted_digit: torch.Tensor = field(repr=False)
    feature: torch.Tensor = field(repr=False)  # (maps, h, w)
    shifted_feature: torch.Tensor = field(repr=False)


@torch.no_grad()
def feature_map_shift(
    layer: torch.nn.Module,
    digit: torch.Tensor,
    normalization: tuple[float, float],
    pixels: int = 2,
    name: str = "c1",
) -> FeatureMapShift:
    """Shift `digit` (1, H, W) in [0, 1] left by `pixels` and compare `layer`'s outputs."""
    mean, std = normalization
    images = torch.stack([digit, translate(digit[None], -pixels)[0]])
    maps = layer((images - mean) / std)
    original, shifted = maps[0], maps[1]
    width = original.shape[-1]
    # A left shift by k moves output column x + k to column x; the last k columns of the
    # shifted map read pixels that entered from the border, so they are not compared.
    difference = (shifted[..., : width - pixels] - original[..., pixels:]).abs().max().item()
    return FeatureMapShift(
        name,
        pixels,
        difference,
        original.abs().max().item(),
        images[0, 0],
        images[1, 0],
        original,
        shifted,
    )
