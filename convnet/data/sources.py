"""Data sources: the one interface through which training and evaluation see data.

Two implementations, one contract:

- `TensorSource`: a data set held in memory as one float tensor (MNIST, Fashion-MNIST,
  CIFAR-10); batches are slices, augmented with one batched transform, the data set's own
  (convnet/data/transforms.py, AUGMENTATIONS: affine for digits, crop and flip for CIFAR).
- `FolderSource`: image files on disk (class folders, ILSVRC2012), decoded and augmented
  in DataLoader worker processes.

The contract (`DataSource`): batches of (normalised float images (N, C, H, W), labels (N,))
for training, and (images, labels, indices) for evaluation. A label of -1 marks an image
that could not be decoded: it adds nothing to the loss or the scores.

Order: one permutation of the training images per epoch, seeded by (seed, epoch), of which
rank r of W takes positions r, r + W, r + 2W, … (as DistributedSampler; the shorter ranks
repeat the first images so every rank takes the same number of steps). Each image's random
augmentation is drawn from (seed, epoch, image index), so it does not depend on the batch,
worker or process that loads it: a W-process run with batch B sees exactly the images of a
one-process run with batch W·B, and a run resumed mid-epoch continues as if never stopped.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from convnet.data.datasets import get_dataset_spec, load_dataset
from convnet.data.folders import FolderDataset, ImageCollection, open_image_collection
from convnet.data.policies import POLICIES, random_erasing
from convnet.data.preparation import (
    DECODE_ERRORS,
    DigitPreprocess,
    decode_failure,
    decode_image,
    evaluation_transform,
    policy_transform,
    training_transform,
)
from convnet.data.transforms import AUGMENTATIONS, normalize, to_model_input
from convnet.errors import UserError

Batch = tuple[torch.Tensor, torch.Tensor]
# Resize before the centre crop for evaluation: torchvision's 256 → 224 ratio.
CROP_FRACTION = 0.875


def mix(*numbers: int) -> int:
    """One seed from several counters (seed, epoch, index), below 2**63."""
    value = 0
    for number in numbers:
        value = (value * 1_000_003 + number) % (2**63)
    return value


def epoch_order(
    count: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """The positions rank `rank` of `world_size` trains on in `epoch`, in order."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(mix(seed, epoch)))
    if world_size > 1:
        padded = math.ceil(count / world_size) * world_size
        order = order.repeat(math.ceil(padded / count))[:padded]
    return order[rank::world_size]


def steps_per_epoch(count: int, batch_size: int, world_size: int = 1) -> int:
    return math.ceil(math.ceil(count / world_size) / batch_size)


class DataSource(Protocol):
    """What the engine needs of any data source."""

    kind: str  # "tensors" | "images"
    name: str  # the data set's name, or the folder
    class_names: tuple[str, ...]
    eval_split: str  # the held-out split scored every epoch: "test" or "val"
    train_count: int
    eval_count: int
    eval_batch_size: int  # images per evaluation batch
    skipped: list[tuple[Path, str]]  # files left out, and why

    def train_batches(
        self,
        epoch: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> Iterator[Batch]: ...

    def eval_batches(
        self, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]: ...

    def eval_image(self, index: int) -> torch.Tensor:
        """Held-out image `index` as the model saw it, before normalisation: (C, H, W) in [0, 1]."""

    failed_training: set[int] | frozenset[int]  # training images that could not be decoded

    def training_failure(self, index: int) -> tuple[str, str]:
        """(file, why) of a training image that could not be decoded."""

    def failure(self, index: int) -> tuple[str, str]:
        """(file, why) of a held-out image that could not be decoded."""


class TensorSource:
    """A data set held in memory: `images` float (N, C, H, W) in [0, 1], `labels` (N,)."""

    kind = "tensors"
    skipped: list = []
    failed_training: frozenset[int] = frozenset()  # decoded once, up front: nothing fails

    def __init__(
        self,
        name: str,
        class_names: tuple[str, ...],
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        normalization: tuple,
        augment: bool = False,
        augmentation: str = "affine",
        auto_augment: str | None = None,
        random_erase: float = 0.0,
    ) -> None:
        self.name, self.class_names, self.eval_split = name, tuple(class_names), "test"
        (self.train_images, self.train_labels), (self.test_images, self.test_labels) = train, test
        self.normalization, self.augment = normalization, augment
        self.augmentation = AUGMENTATIONS[augmentation]  # the data set's own (its registry entry)
        # Further training augmentations, each with the salt of its draws (the data set's own
        # has salt 1): --auto-augment's policy, then --random-erase, which fills with the
        # mean: 0 once normalised, as torchvision erases after normalising.
        self.policies = [(POLICIES[auto_augment], 2)] if auto_augment else []
        if random_erase:
            self.policies.append((random_erasing(random_erase, normalization[0]), 3))
        self.channels = train[0].shape[1]  # colour planes the model sees: 1 or 3
        self.train_count, self.eval_count = len(self.train_labels), len(self.test_labels)
        # 1,000 MNIST digits per evaluation batch, fewer of larger images
        self.eval_batch_size = max(1, min(1000, 4_000_000 // max(1, test[0].shape[1:].numel())))

    @classmethod
    def from_dataset(
        cls,
        name: str,
        input_size: tuple[int, int, int],
        normalization: tuple,
        *,
        data_dir: Path | None = None,
        augment: bool = False,
        train_subset: int | None = None,
        test_subset: int | None = None,
        train: bool = True,
        auto_augment: str | None = None,
        random_erase: float = 0.0,
    ) -> TensorSource:
        """A registered data set (checksums verified), padded or resized to `input_size`.
        With `train=False` only the test split is read (evaluation)."""
        empty = (torch.empty(0, *input_size), torch.empty(0, dtype=torch.long))
        splits = []
        for split, count, wanted in (("train", train_subset, train), ("test", test_subset, True)):
            if not wanted:
                splits.append(empty)
                continue
            data = load_dataset(name, split, data_dir)
            data = data.subset(count) if count else data
            splits.append((to_model_input(data.images, input_size), data.labels))
        spec = get_dataset_spec(name)
        return cls(
            name, spec.class_names, splits[0], splits[1], normalization, augment,
            spec.augmentation, auto_augment, random_erase,
        )  # fmt: skip

    def train_batches(
        self,
        epoch: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> Iterator[Batch]:
        order = epoch_order(self.train_count, seed, epoch, rank, world_size)
        augmentations = [(self.augmentation, 1)] if self.augment else []
        augmentations += self.policies
        draws = [  # each augmentation's draws for each image of the data set
            torch.rand(self.train_count, augmentation.draws,
                       generator=torch.Generator().manual_seed(mix(seed, epoch, salt)))
            for augmentation, salt in augmentations
        ]  # fmt: skip
        for start in range(start_batch * batch_size, len(order), batch_size):
            indices = order[start : start + batch_size]
            batch = self.train_images[indices]
            for (augmentation, _), uniform in zip(augmentations, draws, strict=True):
                batch = augmentation.apply(batch, uniform[indices])
            yield normalize(batch, *self.normalization), self.train_labels[indices]

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        positions = torch.arange(rank, self.eval_count, world_size)
        for start in range(0, len(positions), batch_size):
            indices = positions[start : start + batch_size]
            images = normalize(self.test_images[indices], *self.normalization)
            yield images, self.test_labels[indices], indices

    def eval_image(self, index: int) -> torch.Tensor:
        return self.test_images[index]

    def eval_label(self, index: int) -> int:
        return int(self.test_labels[index])

    def training_failure(self, index: int) -> tuple[str, str]:
        return f"training image {index}", "unreadable"

    def failure(self, index: int) -> tuple[str, str]:
        return f"test image {index}", "unreadable"


class _SeededSamples(Dataset):
    """Each sample's random augmentation drawn from (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, seed: int, epoch: int) -> None:
        self.dataset, self.seed, self.epoch = dataset, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix(self.seed, self.epoch, index))
            return self.dataset[index]


def ignore_interrupts(worker_id: int) -> None:
    """DataLoader worker start-up: Ctrl-C reaches the whole process group, but only the
    training process should act on it (stopping after the step); a worker that died of it
    would break the batches that step still needs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _loader(
    dataset: Dataset, batch_size: int, indices: list[int], workers: int, pin: bool
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=indices,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=ignore_interrupts,
        prefetch_factor=4 if workers > 0 else None,
    )


class FolderSource:
    """Image files on disk: a training split and a held-out split of one collection.

    `classes` (a run's class names, in its output order) matches folders to classes by
    name: a folder no class is named after is a UserError naming it, and a class without a
    folder simply has no images. `eval_split` "all" scores every image of a folder of class
    folders (data the run never saw) rather than the seeded held-out share of it."""

    kind = "images"

    def __init__(
        self,
        root: str | Path,
        input_size: tuple[int, int, int],
        normalization: tuple,
        *,
        classes: tuple[str, ...] | None = None,
        augment: bool = True,
        val_fraction: float = 0.2,
        seed: int = 0,
        strict: bool = False,
        workers: int = 2,
        train: bool = True,
        eval_split: str = "val",
        train_subset: int | None = None,
        test_subset: int | None = None,
        resize: int | None = None,
        interpolation=None,
        ground_truth: str | None = None,
        pin_memory: bool = False,
        digits: bool = False,
        auto_augment: str | None = None,
        random_erase: float = 0.0,
    ) -> None:
        channels, crop = input_size[0], input_size[1]
        mean, std = normalization
        options = dict(val_fraction=val_fraction, seed=seed, strict=strict)
        self.eval_collection = open_image_collection(
            root, eval_split, ground_truth=ground_truth, **options
        )
        self.train_collection = open_image_collection(root, "train", **options) if train else None
        own = (self.train_collection or self.eval_collection).classes
        self.class_names = tuple(classes) if classes else tuple(own)
        self._relabel(self.eval_collection)
        if self.train_collection is not None:
            self._relabel(self.train_collection)
        if train_subset and self.train_collection is not None:  # a seeded random share
            samples = self.train_collection.samples
            keep = torch.randperm(len(samples), generator=torch.Generator().manual_seed(seed))
            self.train_collection.samples = [
                samples[i] for i in sorted(keep[:train_subset].tolist())
            ]
        if test_subset:
            self.eval_collection.samples = self.eval_collection.samples[:test_subset]
        self.name = str(self.eval_collection.root)
        self.eval_split = self.eval_collection.split
        self.train_count = len(self.train_collection.samples) if self.train_collection else 0
        self.eval_count = len(self.eval_collection.samples)
        self.skipped = [
            *(self.train_collection.skipped if self.train_collection else []),
            *self.eval_collection.skipped,
        ]
        both = [self.eval_collection, *([self.train_collection] if train else [])]
        # one scan may serve both splits (a folder of class folders): each entry once
        self.left_out = list(dict.fromkeys(item for c in both for item in c.left_out))
        self.warnings = list(dict.fromkeys(line for c in both for line in c.warnings))
        resize = resize or round(crop / CROP_FRACTION)
        if resize < crop:
            raise UserError(f"--resize {resize} is smaller than the centre crop {crop}.")
        self.preprocessing = dict(
            resize=resize,
            crop=crop,
            mean=mean,
            std=std,
            channels=channels,
            preparation="digit" if digits else "photo",
        )
        extra = {"interpolation": interpolation} if interpolation is not None else {}
        if digits:  # as `convnet predict` prepares a file for a model trained on digits
            self.evaluate_transform = DigitPreprocess(input_size, mean, std)
            self._view = DigitPreprocess(input_size, 0.0, 1.0)
        else:
            self.evaluate_transform = evaluation_transform(
                resize, crop, mean, std, channels=channels, **extra
            )
            self._view = evaluation_transform(resize, crop, 0.0, 1.0, channels=channels, **extra)
        self.train_transform = (
            training_transform(crop, mean, std, channels)
            if augment and not digits
            else self.evaluate_transform
        )
        if auto_augment or random_erase:
            self.train_transform = policy_transform(
                self.train_transform, auto_augment, random_erase
            )
        self.workers, self.pin_memory = workers, pin_memory
        self.eval_batch_size = 64
        self.failed_training: set[int] = set()  # training images that could not be decoded

    def _relabel(self, collection: ImageCollection) -> None:
        """Class indices by name, in `class_names` order."""
        index = {name: position for position, name in enumerate(self.class_names)}
        unknown = sorted(set(collection.classes) - set(index))
        if unknown:
            shown = ", ".join(unknown[:10]) + (
                f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            )
            raise UserError(
                f"{collection.root} has class folders this model has no class for: {shown}. "
                f"Its classes are {', '.join(self.class_names[:10])}"
                f"{', …' if len(self.class_names) > 10 else ''}; remove or rename those folders."
            )
        collection.samples = [
            (path, index[collection.classes[label]]) for path, label in collection.samples
        ]
        collection.classes = self.class_names

    @property
    def layout(self) -> str:
        return self.eval_collection.layout

    def train_batches(
        self,
        epoch: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> Iterator[Batch]:
        order = epoch_order(self.train_count, seed, epoch, rank, world_size)
        dataset = _SeededSamples(
            FolderDataset(self.train_collection, self.train_transform), seed, epoch
        )
        indices = order[start_batch * batch_size :].tolist()
        for images, labels, positions in _loader(
            dataset, batch_size, indices, self.workers, self.pin_memory
        ):
            if (labels < 0).any():  # undecodable: left out of the loss, listed by the engine
                self.failed_training.update(positions[labels < 0].tolist())
            yield images, labels

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        dataset = FolderDataset(self.eval_collection, self.evaluate_transform)
        indices = list(range(rank, self.eval_count, world_size))
        yield from _loader(dataset, batch_size, indices, self.workers, self.pin_memory)

    def eval_image(self, index: int) -> torch.Tensor:
        try:
            return self._view(getattr(self._view, "decode", decode_image)(self.eval_path(index)))
        except (*DECODE_ERRORS, UserError):
            crop = self.preprocessing["crop"]
            return torch.zeros(self.preprocessing["channels"], crop, crop)

    def eval_label(self, index: int) -> int:
        return self.eval_collection.samples[index][1]

    def eval_path(self, index: int) -> Path:
        return self.eval_collection.samples[index][0]

    def training_failure(self, index: int) -> tuple[str, str]:
        path = self.train_collection.samples[index][0]
        return str(path), decode_failure(path, self.train_transform) or "cannot be decoded"

    def failure(self, index: int) -> tuple[str, str]:
        path = self.eval_path(index)
        return str(path), decode_failure(path, self.evaluate_transform) or "cannot be decoded"


def training_data(
    input_size: tuple[int, int, int],
    normalization: tuple,
    *,
    dataset: str | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    classes: list[str] | None = None,
    augment: bool = False,
    val_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
    workers: int = 2,
    train_subset: int | None = None,
    test_subset: int | None = None,
    pin_memory: bool = False,
    auto_augment: str | None = None,
    random_erase: float = 0.0,
) -> DataSource:
    """The training and held-out data of a run: image files on disk (`data`, a folder) or a
    registered data set held in memory (`dataset`, cached in `data_dir`), as the model sees
    them (`input_size` C×H×W, normalised by `normalization`). `classes`: a resumed run's
    class names, which its folders are matched to. UserError for missing data."""
    if data is not None:
        return FolderSource(
            data,
            input_size,
            normalization,
            classes=classes or None,
            augment=augment,
            val_fraction=val_fraction,
            seed=seed,
            strict=strict,
            workers=workers,
            train_subset=train_subset,
            test_subset=test_subset,
            pin_memory=pin_memory,
            auto_augment=auto_augment,
            random_erase=random_erase,
        )
    return TensorSource.from_dataset(
        dataset,
        input_size,
        normalization,
        data_dir=Path(data_dir) if data_dir else None,
        augment=augment,
        train_subset=train_subset,
        test_subset=test_subset,
        auto_augment=auto_augment,
        random_erase=random_erase,
    )
