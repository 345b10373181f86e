"""Image collections on disk: folders of classes, and the original ILSVRC2012 layout.

`open_image_collection(root, split)` finds which layout `root` holds and lists its images:

- split-folders: root/train/<class>/… and root/val/<class>/… (torchvision's ImageFolder);
- class-folders: root/<class>/… with no split, divided per class by a seeded fraction;
- ilsvrc: root/train/<wnid>/… and a flat root/val/ of ILSVRC2012_val_%08d.JPEG files whose
  labels come from the devkit: LOC_val_solution.csv, or ILSVRC2012_validation_ground_truth.txt
  (one devkit ILSVRC2012_ID per image) with meta.mat (which maps those ids to WordNet ids).

Class indices are positions in the sorted list of folder names / WordNet ids, the order
torchvision's ImageNet weights use, so their published accuracy is reproduced unchanged.
Decoding happens in `FolderDataset.__getitem__`, i.e. in DataLoader workers.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from convnet.data.ilsvrc import (
    CSV_NAME,
    DEVKIT_META,
    DEVKIT_TRUTH,
    ILSVRC_VAL_NAME,
    find_ground_truth,
    is_flat_ilsvrc_val,
    listing,
    read_ground_truth,
)
from convnet.data.preparation import DECODE_ERRORS, decode_image
from convnet.data.scanning import Scan, is_image_name, scan_class_folders
from convnet.errors import UserError
from convnet.wording import counted

LAYOUTS = ("split-folders", "class-folders", "ilsvrc")
SPLITS = ("train", "val")
# "all": every image of a folder of class folders, unsplit (scoring data a run never saw).
# Other layouts have their own val/ split, which "all" then means.
ALL = "all"


@dataclass
class ImageCollection:
    """The images of one split of a collection, with their class indices."""

    root: Path
    layout: str  # "split-folders" | "class-folders" | "ilsvrc"
    split: str  # "train" | "val"
    classes: tuple[str, ...]  # folder names / WordNet ids, sorted (torchvision's class order)
    samples: list[tuple[Path, int]]  # (image file, class index)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # images unusable, why
    ground_truth: Path | None = None  # ilsvrc validation: the file the labels came from
    # files of the class folders that are not taken as images (not images, hidden, links
    # that loop, a second name for a file already counted), and why
    left_out: list[tuple[Path, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. a class with fewer than 2 images

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> str:
        source = f", labels from {self.ground_truth.name}" if self.ground_truth else ""
        return (
            f"{self.root} ({self.layout}{source}): {self.split} split, {len(self.samples):,} "
            f"images in {len(self.classes):,} classes"
            + (f", {len(self.skipped)} files skipped" if self.skipped else "")
            + (f", {len(self.left_out)} left out" if self.left_out else "")
        )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")
    )


def _without_empty_files(files: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Zero-byte files cannot hold an image: leave them out and say so."""
    kept, skipped = [], []
    for path in files:
        try:
            size = path.stat().st_size
        except OSError as error:
            skipped.append((path, f"cannot be read ({error.strerror or error})"))
            continue
        if size == 0:
            skipped.append((path, "empty file (0 bytes)"))
        else:
            kept.append(path)
    return kept, skipped


def _scan_class_folders(folder: Path) -> Scan:
    """The image files of each class folder of a folder of class folders (each real file
    once: convnet/data/scanning.py), and what was left out; empty class folders are an error."""
    if not folder.is_dir():
        raise UserError(f"Image folder {folder} does not exist.")
    class_folders = {sub.name: sub for sub in _subfolders(folder)}
    if not class_folders:
        loose = [p for p in folder.iterdir() if p.is_file() and is_image_name(p.name)]
        raise UserError(
            f"{folder} holds no class folders"
            + (f" ({len(loose)} loose images)" if loose else " and no images")
            + ": --data expects one sub-folder per class (root/<class>/*.jpg), train/ and val/ "
            "folders of those, or the ILSVRC2012 layout (train/<wnid>/…, a flat val/ of "
            f"ILSVRC2012_val_*.JPEG and {CSV_NAME} or the devkit's {DEVKIT_TRUTH} with "
            f"{DEVKIT_META})."
        )
    scan = scan_class_folders(folder, class_folders)
    scan.left_out[:0] = [
        (path, "an image outside any class folder")
        for path in sorted(folder.iterdir())
        if path.is_file() and is_image_name(path.name) and not path.name.startswith(".")
    ]
    empty = [name for name, images in scan.files.items() if not images]
    if empty:
        why = {}
        for path, reason in scan.left_out:
            for name in empty:
                if class_folders[name] in path.parents:
                    why.setdefault(name, f"{path.name}: {reason}")
        shown = [name + (f" ({why[name]})" if name in why else "") for name in empty]
        raise UserError(
            f"{folder} has {len(empty)} class folder{'s' if len(empty) > 1 else ''} without any "
            f"image Pillow can read: {listing(shown)}. Remove "
            f"{'them' if len(empty) > 1 else 'it'} or add images."
        )
    return scan


def _few_images(files: dict[str, list[Path]]) -> list[str]:
    """The warning for each class with fewer than two images: a folder of class folders is
    divided per class, so one image is trained on and never validated (or the reverse)."""
    return [
        f"Class {name} has {len(paths)} image{'s' if len(paths) != 1 else ''}: it needs 2 or "
        "more to be both trained on and validated; add images or remove the class."
        for name, paths in sorted(files.items())
        if len(paths) < 2
    ]


def _strictly(collection: ImageCollection, strict: bool) -> ImageCollection:
    if strict and collection.skipped:
        raise UserError(
            f"--strict: {counted(len(collection.skipped), 'file')} in {collection.root} cannot be used: "
            + listing([f"{path} ({why})" for path, why in collection.skipped])
            + ". Remove or replace them, or run without --strict to skip them."
        )
    if strict and collection.warnings:
        raise UserError(f"--strict: {' '.join(collection.warnings)}")
    return collection


def _from_class_files(
    root: Path,
    layout: str,
    split: str,
    classes: tuple[str, ...],
    files: dict[str, list[Path]],
    scan: Scan,
    warnings: list[str],
) -> ImageCollection:
    index = {name: position for position, name in enumerate(classes)}
    samples, skipped = [], []
    for name in sorted(files):
        kept, unusable = _without_empty_files(files[name])
        samples.extend((path, index[name]) for path in kept)
        skipped.extend(unusable)
    return ImageCollection(
        root, layout, split, classes, samples, skipped, left_out=scan.left_out, warnings=warnings
    )


def _fraction_split(
    files: dict[str, list[Path]], split: str, val_fraction: float, seed: int
) -> dict[str, list[Path]]:
    """Each class's files shuffled by (seed, class name), the first round(n·fraction) of them
    validation (at least one where a class has two or more), the rest training: disjoint,
    and the same on every machine for the same seed."""
    chosen = {}
    for name, paths in files.items():
        order = sorted(paths)
        random.Random(f"{seed}/{name}").shuffle(order)
        count = round(len(order) * val_fraction)
        if count == 0 and len(order) > 1:
            count = 1
        if count == len(order) and len(order) > 1:
            count -= 1
        chosen[name] = sorted(order[:count] if split == "val" else order[count:])
    return chosen


# --- ILSVRC2012 validation ----------------------------------------------------------


def _ilsvrc_val(
    root: Path, val_dir: Path, classes: tuple[str, ...] | None, ground_truth: Path | None
) -> ImageCollection:
    truth_path = find_ground_truth(val_dir, root, ground_truth)
    truth, all_wnids = read_ground_truth(truth_path)
    images = sorted(p for p in val_dir.iterdir() if ILSVRC_VAL_NAME.match(p.name))
    if len(truth) != len(images):
        raise UserError(
            f"The ground truth {truth_path} has {len(truth):,} entries but {val_dir} holds "
            f"{len(images):,} ILSVRC2012_val_*.JPEG images; they must match one to one (a "
            "partial copy, or the ground truth of another split?)."
        )
    numbers = {p: int(ILSVRC_VAL_NAME.match(p.name).group(1)) for p in images}
    unlabelled = [p.name for p in images if numbers[p] not in truth]
    if unlabelled:
        raise UserError(f"{truth_path} has no label for {listing(unlabelled)}.")
    classes = classes or tuple(all_wnids)
    index = {wnid: position for position, wnid in enumerate(classes)}
    foreign = sorted({truth[numbers[p]] for p in images} - set(index))
    if foreign:
        raise UserError(
            f"{truth_path} labels validation images with WordNet ids that are not training "
            f"classes in {root / 'train'}: {listing(foreign)}."
        )
    kept, skipped = _without_empty_files(images)
    samples = [(path, index[truth[numbers[path]]]) for path in kept]
    return ImageCollection(root, "ilsvrc", "val", classes, samples, skipped, truth_path)


# --- layout detection -----------------------------------------------------------------


def _has_class_folders(folder: Path) -> bool:
    return folder.is_dir() and bool(_subfolders(folder))


def _layout_of(root: Path) -> str | None:
    if is_flat_ilsvrc_val(root / "val"):
        return "ilsvrc"
    if _has_class_folders(root / "train") or _has_class_folders(root / "val"):
        return "split-folders"
    return None


def open_image_collection(
    root: Path | str,
    split: str,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    ground_truth: Path | str | None = None,
) -> ImageCollection:
    """The images of `split` ("train" or "val") in `root`, whichever layout it holds.

    `root` may also be the train/ or val/ folder of a split layout (its parent is used) or a
    flat ILSVRC2012 validation folder. `val_fraction` and `seed` divide a folder of class
    folders; `ground_truth` names an ILSVRC validation ground-truth file found elsewhere.
    Zero-byte files are left out and listed in `skipped`; with `strict` they are an error.
    """
    root = Path(root).expanduser()
    if split not in (*SPLITS, ALL):
        raise UserError(f"Unknown split '{split}'; use one of {', '.join(SPLITS)}.")
    if not root.is_dir():
        raise UserError(f"Data folder {root} does not exist (or is not a folder).")
    if not 0 < val_fraction < 1:
        raise UserError(f"The validation fraction must lie between 0 and 1, not {val_fraction}.")
    given = Path(ground_truth) if ground_truth else None
    if root.name in SPLITS and _layout_of(root.parent) is not None:
        root = root.parent  # --data pointed at train/ or val/: the collection is its parent
    layout = _layout_of(root)
    if layout is None and is_flat_ilsvrc_val(root):  # a flat validation folder by itself
        if split == "train":
            raise UserError(
                f"{root} is an ILSVRC2012 validation folder; it has no training images."
            )
        return _strictly(_ilsvrc_val(root, root, None, given), strict)
    if layout is None:
        scan = _scan_class_folders(root)
        usable = {name: _without_empty_files(paths)[0] for name, paths in scan.files.items()}
        files = scan.files
        if split != ALL:
            files = _fraction_split(files, split, val_fraction, seed)
        warnings = _few_images(usable) if split != ALL else []
        collection = _from_class_files(
            root, "class-folders", split, tuple(sorted(files)), files, scan, warnings
        )
        return _strictly(collection, strict)
    split = "val" if split == ALL else split
    train_dir, split_dir = root / "train", root / split
    classes = tuple(name.name for name in _subfolders(train_dir)) if train_dir.is_dir() else None
    if layout == "ilsvrc" and split == "val":
        return _strictly(_ilsvrc_val(root, split_dir, classes, given), strict)
    if not split_dir.is_dir():
        raise UserError(
            f"{root} has {'train/' if split == 'val' else 'val/'} but no {split}/ folder: add "
            f"{split}/ with one sub-folder per class, or keep all class folders in one folder "
            "not named train/ or val/, which is then divided by a seeded fraction."
        )
    scan = _scan_class_folders(split_dir)
    files = scan.files
    classes = classes or tuple(sorted(files))
    unknown = sorted(set(files) - set(classes))
    if unknown:
        raise UserError(
            f"{split_dir} has class folders that {train_dir} lacks: {listing(unknown)}; the "
            "training folder defines the classes."
        )
    collection = _from_class_files(root, layout, split, classes, files, scan, [])
    return _strictly(collection, strict)


# --- reading the files ------------------------------------------------------------


class FolderDataset(torch.utils.data.Dataset):
    """(image tensor, label, index) of an image collection, decoded when a worker asks.

    The transform's `decode(path)` reads the file (default `decode_image`). A file that
    cannot be decoded or prepared gives label -1 and a zero image of the transform's output
    shape and type, so one bad JPEG among 1.28 million neither stops an epoch nor breaks a
    batch; callers drop label -1 and report the indices (`decode_failure` says why).
    """

    def __init__(
        self,
        collection: ImageCollection,
        transform: Callable[[Image.Image], torch.Tensor],
    ) -> None:
        self.collection = collection
        self.transform = transform
        self.decode = getattr(transform, "decode", decode_image)
        self._blank_shape: torch.Size | None = getattr(transform, "shape", None)
        self._blank_dtype = getattr(transform, "dtype", torch.float32)

    def __len__(self) -> int:
        return len(self.collection.samples)

    def _blank(self) -> torch.Tensor:
        if self._blank_shape is None:
            self._blank_shape = self.transform(Image.new("RGB", (300, 300))).shape
        return torch.zeros(self._blank_shape, dtype=self._blank_dtype)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        path, label = self.collection.samples[index]
        try:
            return self.transform(self.decode(path)), label, index
        except (*DECODE_ERRORS, UserError):
            return self._blank(), -1, index


def default_workers() -> int:
    """DataLoader worker processes: min(4, CPUs this process may use)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(4, cpus)
