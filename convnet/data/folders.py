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
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

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
from convnet.data.images import as_photo, mnist_style, oriented, to_grey
from convnet.errors import UserError

LAYOUTS = ("split-folders", "class-folders", "ilsvrc")
SPLITS = ("train", "val")
# "all": every image of a folder of class folders, unsplit (scoring data a run never saw).
# Other layouts have their own val/ split, which "all" then means.
ALL = "all"
# torchvision's IMG_EXTENSIONS (datasets/folder.py)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class ImageCollection:
    """The images of one split of a collection, with their class indices."""

    root: Path
    layout: str  # "split-folders" | "class-folders" | "ilsvrc"
    split: str  # "train" | "val"
    classes: tuple[str, ...]  # folder names / WordNet ids, sorted (torchvision's class order)
    samples: list[tuple[Path, int]]  # (image file, class index)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # left out while scanning, why
    ground_truth: Path | None = None  # ilsvrc validation: the file the labels came from

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> str:
        source = f", labels from {self.ground_truth.name}" if self.ground_truth else ""
        return (
            f"{self.root} ({self.layout}{source}): {self.split} split, {len(self.samples):,} "
            f"images in {len(self.classes):,} classes"
            + (f", {len(self.skipped)} files skipped" if self.skipped else "")
        )


def _subfolders(folder: Path) -> list[Path]:
    return sorted(
        path for path in folder.iterdir() if path.is_dir() and not path.name.startswith(".")
    )


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _image_files(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively (as ImageFolder does), sorted."""
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        subdirectories[:] = sorted(d for d in subdirectories if not d.startswith("."))
        found.extend(Path(directory) / name for name in files if _is_image(name))
    return sorted(found)


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


def _scan_class_folders(folder: Path) -> dict[str, list[Path]]:
    """{class folder name: image files} of a folder of class folders; empty ones are an error."""
    if not folder.is_dir():
        raise UserError(f"Image folder {folder} does not exist.")
    files = {sub.name: _image_files(sub) for sub in _subfolders(folder)}
    if not files:
        loose = [p for p in folder.iterdir() if p.is_file() and _is_image(p.name)]
        raise UserError(
            f"{folder} holds no class folders"
            + (f" ({len(loose)} loose images)" if loose else " and no images")
            + ": --data expects one sub-folder per class (root/<class>/*.jpg), train/ and val/ "
            "folders of those, or the ILSVRC2012 layout (train/<wnid>/…, a flat val/ of "
            f"ILSVRC2012_val_*.JPEG and {CSV_NAME} or the devkit's {DEVKIT_TRUTH} with "
            f"{DEVKIT_META})."
        )
    empty = [name for name, images in files.items() if not images]
    if empty:
        raise UserError(
            f"{folder} has {len(empty)} class folder{'s' if len(empty) > 1 else ''} without any "
            f"image ({', '.join(IMAGE_EXTENSIONS)}): {listing(empty)}. Remove "
            f"{'them' if len(empty) > 1 else 'it'} or add images."
        )
    return files


def _strictly(collection: ImageCollection, strict: bool) -> ImageCollection:
    if strict and collection.skipped:
        raise UserError(
            f"--strict: {len(collection.skipped)} file(s) in {collection.root} cannot be used: "
            + listing([f"{path} ({why})" for path, why in collection.skipped])
            + ". Remove or replace them, or run without --strict to skip them."
        )
    return collection


def _from_class_files(
    root: Path, layout: str, split: str, classes: tuple[str, ...], files: dict[str, list[Path]]
) -> ImageCollection:
    index = {name: position for position, name in enumerate(classes)}
    samples, skipped = [], []
    for name in sorted(files):
        kept, left_out = _without_empty_files(files[name])
        samples.extend((path, index[name]) for path in kept)
        skipped.extend(left_out)
    return ImageCollection(root, layout, split, classes, samples, skipped)


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
        files = _scan_class_folders(root)
        if split != ALL:
            files = _fraction_split(files, split, val_fraction, seed)
        collection = _from_class_files(root, "class-folders", split, tuple(sorted(files)), files)
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
    files = _scan_class_folders(split_dir)
    classes = classes or tuple(sorted(files))
    unknown = sorted(set(files) - set(classes))
    if unknown:
        raise UserError(
            f"{split_dir} has class folders that {train_dir} lacks: {listing(unknown)}; the "
            "training folder defines the classes."
        )
    return _strictly(_from_class_files(root, layout, split, classes, files), strict)


# --- decoding and transforms ----------------------------------------------------------

DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def decode_image(path: Path) -> Image.Image:
    """An 8-bit RGB image, the right way up (EXIF orientation), from any file and pixel mode
    PIL reads: greyscale, CMYK, palette, 16-bit and float, with transparency over white."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. palette transparency, EXIF oddities
        with Image.open(path) as image:
            image.load()
            return as_photo(image)


def decode_failure(path: Path, transform: Callable | None = None) -> str | None:
    """Why `path` cannot be decoded, or prepared by `transform` (None if it can): for
    listing skipped files."""
    try:
        image = getattr(transform, "decode", decode_image)(path)
        if transform is not None:
            transform(image)
    except (*DECODE_ERRORS, UserError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        return f"cannot be decoded ({type(error).__name__}{': ' + text if text else ''})"
    return None


class FolderDataset(torch.utils.data.Dataset):
    """(image tensor, label, index) of an image collection, decoded when a worker asks.

    The transform's `decode(path)` reads the file (default `decode_image`). A file that
    cannot be decoded or prepared gives label -1 and a zero image of the transform's output
    shape, so one bad JPEG among 1.28 million neither stops an epoch nor breaks a batch;
    callers drop label -1 and report the indices (`decode_failure` says why).
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

    def __len__(self) -> int:
        return len(self.collection.samples)

    def _blank(self) -> torch.Tensor:
        if self._blank_shape is None:
            self._blank_shape = self.transform(Image.new("RGB", (300, 300))).shape
        return torch.zeros(self._blank_shape)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        path, label = self.collection.samples[index]
        try:
            return self.transform(self.decode(path)), label, index
        except (*DECODE_ERRORS, UserError):
            return self._blank(), -1, index


class _Preprocess:
    """PIL image -> normalised float tensor (a class, not a lambda: workers may pickle it):
    `steps` on the image, then `after` on the normalised tensor (random erasing)."""

    def __init__(
        self, steps: list[Callable], mean, std, channels: int, after: list[Callable] = ()
    ) -> None:
        self.steps, self.mean, self.std, self.channels = steps, list(mean), list(std), channels
        self.after = list(after)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.channels == 1:
            image = image.convert("L")
        for step in self.steps:
            image = step(image)
        tensor = TF.convert_image_dtype(TF.pil_to_tensor(image), torch.float)
        tensor = TF.normalize(tensor, self.mean, self.std)
        for step in self.after:
            tensor = step(tensor)
        return tensor

    def __repr__(self) -> str:
        steps = ", ".join(repr(step) for step in self.steps)
        return f"Preprocess([{steps}], mean={self.mean}, std={self.std})"


def read_image(path: Path) -> Image.Image:
    """The file's own pixels and mode, the right way up (for preparations that need them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            image.load()
            return oriented(image)


class DigitPreprocess:
    """A file -> a normalised digit as the model's MNIST training data looked: the
    preparation `convnet predict` gives a digit model (grey, 20×20 box centred by mass in
    28×28, padded or resized to the model's input)."""

    decode = staticmethod(read_image)

    def __init__(self, size: tuple[int, int, int], mean, std) -> None:
        self.shape, self.mean, self.std = torch.Size(size), mean, std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from convnet.data.transforms import normalize, to_model_input

        digit = mnist_style(to_grey(image), getattr(image, "filename", "") or "image")
        return normalize(to_model_input(digit[None], tuple(self.shape))[0], self.mean, self.std)


def _per_channel(value, channels: int) -> list[float]:
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        return values * channels
    if channels == 1:
        return [sum(values) / len(values)]
    return values


def evaluation_transform(
    resize: int,
    crop: int,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    channels: int = 3,
) -> Callable[[Image.Image], torch.Tensor]:
    """torchvision's ImageNet evaluation preprocessing (its ImageClassification preset): the
    shorter side resized to `resize`, a centre crop of `crop`, [0, 1], then normalised."""
    from torchvision import transforms

    steps = [
        transforms.Resize(resize, interpolation=interpolation, antialias=True),
        transforms.CenterCrop(crop),
    ]
    return _Preprocess(steps, _per_channel(mean, channels), _per_channel(std, channels), channels)


def training_transform(
    crop: int,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    channels: int = 3,
) -> Callable[[Image.Image], torch.Tensor]:
    """The standard ImageNet augmentation (Szegedy et al. 2015's crops, as torchvision's
    references train): a random crop of 8–100% of the area and 3/4–4/3 aspect, resized to
    `crop`, and a horizontal flip half the time."""
    from torchvision import transforms

    steps = [transforms.RandomResizedCrop(crop, antialias=True), transforms.RandomHorizontalFlip()]
    return _Preprocess(steps, _per_channel(mean, channels), _per_channel(std, channels), channels)


def policy_transform(
    base: _Preprocess, auto_augment: str | None, random_erase: float
) -> _Preprocess:
    """`base` (the crop-and-flip augmentation, or evaluation's resize and centre crop with
    --no-augment) followed by torchvision's automatic augmentation policy on the image and
    random erasing on the normalised tensor, as its reference script trains (--auto-augment
    ra | ta_wide | augmix | imagenet; --random-erase P erases with 0, the mean)."""
    from torchvision.transforms import v2

    policies = {
        "ra": v2.RandAugment,
        "ta_wide": v2.TrivialAugmentWide,
        "augmix": v2.AugMix,
        "imagenet": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
    }
    steps = [*base.steps, *([policies[auto_augment]()] if auto_augment else [])]
    after = [v2.RandomErasing(p=random_erase)] if random_erase > 0 else []
    return _Preprocess(steps, base.mean, base.std, base.channels, after)


def default_workers() -> int:
    """DataLoader worker processes: min(4, CPUs this process may use)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(4, cpus)
