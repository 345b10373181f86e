"""Miniature image collections in the layouts `--data DIR` reads (issue 5): an image folder
with train/ and val/ splits, one folder of classes to split by a seeded fraction, and the
original ILSVRC2012 layout (synset training folders, one flat validation folder, and the
devkit's ground truth as `LOC_val_solution.csv` or `ILSVRC2012_validation_ground_truth.txt`
with `meta.mat`). Every layout holds the same pixels, so they must evaluate identically.

Each class is a learnable pattern (stripes at its own angle and colour, plus noise), so a
small network trains on it in a few steps.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from PIL import Image

# ImageNet's first five synsets in sorted order (tench, goldfish, great white shark, tiger
# shark, hammerhead): class indices follow the sorted WordNet ids, as torchvision's do.
WNIDS = ("n01440764", "n01443537", "n01484850", "n01491361", "n01494475")
# The devkit numbers synsets by its own ILSVRC2012_ID, not in sorted-wnid order; a fake
# devkit that numbered them in sorted order could not catch a reader that ignores meta.mat.
DEVKIT_IDS = {"n01440764": 3, "n01443537": 1, "n01484850": 5, "n01491361": 2, "n01494475": 4}


def pattern(label: int, index: int, size: int = 40, classes: int = len(WNIDS)) -> Image.Image:
    """An RGB image of class `label`: stripes at angle label·180°/classes in the class's
    colour, with a phase and noise drawn from (label, index)."""
    rng = np.random.default_rng(1000 * label + index)
    angle = math.pi * label / classes
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    stripes = 0.5 + 0.5 * np.sin((x * math.cos(angle) + y * math.sin(angle)) * 0.6 + phase)
    colour = np.array([(label * 97) % 256, (label * 57 + 80) % 256, (label * 151 + 40) % 256])
    pixels = stripes[..., None] * colour + rng.normal(0, 12, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _samples(split: str, per_class: int, classes: int) -> list[tuple[int, int]]:
    """(label, index) pairs of a split; validation indices do not overlap training ones."""
    offset = 0 if split == "train" else 10_000
    return [(label, offset + i) for label in range(classes) for i in range(per_class)]


def make_split_folders(
    root: Path, train_per_class: int = 24, val_per_class: int = 8, classes: int = len(WNIDS)
) -> Path:
    """root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG."""
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label, index in _samples(split, count, classes):
            folder = root / split / WNIDS[label]
            folder.mkdir(parents=True, exist_ok=True)
            pattern(label, index).save(folder / f"{WNIDS[label]}_{index}.JPEG", quality=95)
    return root


def make_class_folders(root: Path, per_class: int = 24, classes: int = len(WNIDS)) -> Path:
    """root/<wnid>/*.JPEG, one folder per class, no split."""
    for label, index in _samples("train", per_class, classes):
        folder = root / WNIDS[label]
        folder.mkdir(parents=True, exist_ok=True)
        pattern(label, index).save(folder / f"{WNIDS[label]}_{index}.JPEG", quality=95)
    return root


def make_ilsvrc(
    root: Path,
    train_per_class: int = 24,
    val_per_class: int = 8,
    classes: int = len(WNIDS),
    ground_truth: str = "both",
) -> Path:
    """The ILSVRC2012 layout with the same pixels as `make_split_folders`: training synset
    folders, a flat val/ of ILSVRC2012_val_%08d.JPEG files in shuffled class order, and
    the ground truth as "csv" (LOC_val_solution.csv), "devkit" (ground-truth text file and
    meta.mat under ILSVRC2012_devkit_t12/data), or "both"."""
    for label, index in _samples("train", train_per_class, classes):
        folder = root / "train" / WNIDS[label]
        folder.mkdir(parents=True, exist_ok=True)
        pattern(label, index).save(folder / f"{WNIDS[label]}_{index}.JPEG", quality=95)
    validation = _samples("val", val_per_class, classes)
    order = np.random.default_rng(7).permutation(len(validation))
    (root / "val").mkdir(parents=True, exist_ok=True)
    truth: list[tuple[str, str]] = []
    for number, position in enumerate(order, start=1):
        label, index = validation[position]
        image_id = f"ILSVRC2012_val_{number:08d}"
        pattern(label, index).save(root / "val" / f"{image_id}.JPEG", quality=95)
        truth.append((image_id, WNIDS[label]))
    if ground_truth in ("csv", "both"):
        with (root / "LOC_val_solution.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["ImageId", "PredictionString"])
            for image_id, wnid in truth:
                writer.writerow([image_id, f"{wnid} 10 10 30 30 {wnid} 0 0 20 20"])
    if ground_truth in ("devkit", "both"):
        write_devkit(root / "ILSVRC2012_devkit_t12" / "data", [wnid for _, wnid in truth])
    return root


def write_devkit(folder: Path, wnids_in_image_order: list[str]) -> None:
    """The devkit's ground truth (one ILSVRC2012_ID per validation image, in file-name
    order) and a meta.mat whose `synsets` map those ids to WordNet ids."""
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"{DEVKIT_IDS[wnid]}\n" for wnid in wnids_in_image_order)
    (folder / "ILSVRC2012_validation_ground_truth.txt").write_text(lines)
    fields = [
        ("ILSVRC2012_ID", "O"),
        ("WNID", "O"),
        ("words", "O"),
        ("gloss", "O"),
        ("num_children", "O"),
        ("wordnet_height", "O"),
        ("num_train_images", "O"),
    ]
    synsets = np.zeros((len(DEVKIT_IDS) + 1,), dtype=fields)
    for row, (wnid, devkit_id) in enumerate(sorted(DEVKIT_IDS.items(), key=lambda kv: kv[1])):
        synsets[row] = (devkit_id, wnid, f"class {wnid}", "a fake synset", 0, 0, 24)
    # a non-leaf synset, as the real meta.mat holds: readers must skip it
    synsets[-1] = (1001, "n00000001", "entity", "a parent synset", 3, 5, 0)
    savemat(folder / "meta.mat", {"synsets": synsets})


def make_brightness_classes(root: Path, names: tuple[str, ...], per_class: int = 12) -> Path:
    """Classes a tiny network tells apart at once: uniform grey images of three brightnesses."""
    levels = {"a_dark": 20, "b_mid": 128, "c_bright": 235}
    for name in names:
        folder = root / name
        folder.mkdir(parents=True)
        for index in range(per_class):
            level = levels.get(name, 128) + (index % 5) - 2
            Image.new("RGB", (24, 24), (level, level, level)).save(folder / f"{index}.png")
    return root
