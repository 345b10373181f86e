"""Data sources: the one interface through which training and evaluation see data.

Three implementations, one contract:

- `TensorSource`: a data set held in memory as one float tensor (MNIST, Fashion-MNIST,
  CIFAR-10); batches are slices, augmented with one batched transform, the data set's own
  (convnet/data/transforms.py, AUGMENTATIONS: affine for digits, crop and flip for CIFAR).
- `FolderSource` (convnet/data/folder_source.py): image files on disk (class folders, ILSVRC2012), decoded and augmented
  in DataLoader worker processes.
- `ShardSource` (convnet/data/shard_source.py): the same images as WebDataset tar shards,
  read as streams (`convnet data shard` writes them).

The contract (`DataSource`): batches of (images (N, C, H, W), labels (N,), erasing) for
training, and (images, labels, indices) for evaluation, the images as the source keeps them
— uint8 pixels from image files, float in [0, 1] from memory — and `device_normalize`, which
the engine calls on every batch to make it the model's input on its device (normalised, and
erased where random erasing drew a rectangle). A label of -1 marks an image that could not
be decoded: it adds nothing to the loss or the scores.

Order: one permutation of the training images per epoch, seeded by (seed, epoch), of which
rank r of W takes positions r, r + W, r + 2W, … (as DistributedSampler; the shorter ranks
repeat the first images so every rank takes the same number of steps). Each image's random
augmentation is drawn from (seed, epoch, image index), so it does not depend on the batch,
worker or process that loads it: a W-process run with batch B sees exactly the images of a
one-process run with batch W·B, and a run resumed mid-epoch continues as if never stopped.
Shards keep that rule with an order of their own that reads whole shards in turn
(convnet/data/shard_plan.py); a source whose epoch is longer than its images (padding) says
so by `epoch_length`, which sets the steps of an epoch.

Image files are decoded by DataLoader workers started once per source and split and kept
across epochs (persistent): what changes from one epoch to the next — the order, and the
(seed, epoch) of each image's draws — reaches them through the sampler's keys
(`_Keys`), so an epoch's batches are those of fresh workers. `close` stops them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

import torch

from convnet.data.datasets import get_dataset_spec, load_dataset
from convnet.data.policies import POLICIES, random_erasing
from convnet.data.transforms import AUGMENTATIONS, DeviceNormalize, to_model_input
from convnet.errors import UserError


class Batch(NamedTuple):
    """A training batch: the images as the source keeps them (uint8 pixels, or float in
    [0, 1]; not yet normalised), their labels (-1: undecodable), and where random erasing
    falls on image files, (N, 4) rectangles (`DeviceNormalize`), or None."""

    images: torch.Tensor
    labels: torch.Tensor
    erase: torch.Tensor | None = None


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
    device_normalize: DeviceNormalize  # a batch as yielded -> the model's input on its device

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

    def close(self) -> None:
        """Stop the source's worker processes, if it has any (a later batch starts them again)."""


def physical_memory() -> int:
    """This machine's memory in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(name: str, count: int, input_size: tuple[int, int, int]) -> None:
    """Refuse (UserError) to prepare `count` images of data set `name` in memory at the
    model's `input_size` where, as float32, they would take over half the machine's memory
    (fashion-mnist at resnet18's 3×224×224: 42 GB)."""
    needed = count * math.prod(input_size) * 4
    memory = physical_memory()
    if needed > memory / 2:
        side = "×".join(str(size) for size in input_size)
        raise UserError(
            f"Holding {name}'s {count:,} images in memory at the model's input, {side}, "
            f"takes {needed / 1e9:.1f} GB as float32, more than half of this machine's "
            f"{memory / 1e9:.1f} GB. Train on fewer images (--train-subset N, --test-subset "
            "N), or choose a network made for small images (e.g. resnet_mini, 32×32; "
            "convnet --help lists them)."
        )


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
        self.augment = augment
        self.device_normalize = DeviceNormalize(*normalization)
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
        loaded = []
        for split, count, wanted in (("train", train_subset, train), ("test", test_subset, True)):
            data = load_dataset(name, split, data_dir) if wanted else None
            loaded.append(data.subset(count) if data is not None and count else data)
        check_memory(name, sum(len(data.labels) for data in loaded if data), input_size)
        splits = [
            (to_model_input(data.images, input_size), data.labels) if data else empty
            for data in loaded
        ]
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
            yield Batch(batch, self.train_labels[indices])

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        positions = torch.arange(rank, self.eval_count, world_size)
        for start in range(0, len(positions), batch_size):
            indices = positions[start : start + batch_size]
            yield self.test_images[indices], self.test_labels[indices], indices

    def eval_image(self, index: int) -> torch.Tensor:
        return self.test_images[index]

    def eval_label(self, index: int) -> int:
        return int(self.test_labels[index])

    def training_failure(self, index: int) -> tuple[str, str]:
        return f"training image {index}", "unreadable"

    def failure(self, index: int) -> tuple[str, str]:
        return f"test image {index}", "unreadable"

    def close(self) -> None:
        """Nothing to stop: batches are slices of tensors in memory."""


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
    shard_streams: int | None = None,
    world_size: int = 1,
) -> DataSource:
    """The training and held-out data of a run: image files on disk (`data`, a folder) or a
    registered data set held in memory (`dataset`, cached in `data_dir`), as the model sees
    them (`input_size` C×H×W, normalised by `normalization`). `classes`: a resumed run's
    class names, which its folders are matched to. `data` may also be shards
    (convnet/data/shard_source.py), read as `shard_streams` streams shared by `world_size`
    processes. UserError for missing data."""
    from convnet.data.shard_manifest import is_shard_data

    images = dict(
        classes=classes or None,
        augment=augment,
        strict=strict,
        workers=workers,
        train_subset=train_subset,
        test_subset=test_subset,
        pin_memory=pin_memory,
        auto_augment=auto_augment,
        random_erase=random_erase,
    )
    if data is not None and is_shard_data(data):
        from convnet.data.shard_source import ShardSource

        return ShardSource(
            data, input_size, normalization, streams=shard_streams, world_size=world_size, **images
        )
    if shard_streams is not None:
        raise UserError(
            "--shard-streams is how a run reads tar shards (--data SHARDS); "
            f"{data or dataset} is not shards. Drop it."
        )
    if data is not None:
        from convnet.data.folder_source import FolderSource

        return FolderSource(
            data, input_size, normalization, val_fraction=val_fraction, seed=seed, **images
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
