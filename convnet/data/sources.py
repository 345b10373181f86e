"""Data sources: the one interface through which training and evaluation see data.

Three implementations, one contract:

- `TensorSource`: a data set held in memory as one float tensor (MNIST, Fashion-MNIST,
  CIFAR-10); batches are slices, augmented with one batched transform, the data set's own
  (convnet/data/transforms.py, AUGMENTATIONS: affine for digits, crop and flip for CIFAR).
- `FolderSource`: image files on disk (class folders, ILSVRC2012), decoded and augmented
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
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

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
from convnet.data.transforms import AUGMENTATIONS, DeviceNormalize, to_model_input
from convnet.errors import UserError


class Batch(NamedTuple):
    """A training batch: the images as the source keeps them (uint8 pixels, or float in
    [0, 1]; not yet normalised), their labels (-1: undecodable), and where random erasing
    falls on image files, (N, 4) rectangles (`DeviceNormalize`), or None."""

    images: torch.Tensor
    labels: torch.Tensor
    erase: torch.Tensor | None = None


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


class _SeededSamples(Dataset):
    """Training samples by key (seed, epoch, index): each sample's random augmentation drawn
    from those numbers, its random erasing's rectangle last (`ErasingDraw`), so the
    workers, which keep this dataset for the whole run, need only the keys of an epoch."""

    def __init__(self, dataset: Dataset, erasing: Callable | None = None) -> None:
        self.dataset, self.erasing = dataset, erasing

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]):
        seed, epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix(seed, epoch, index))
            sample = self.dataset[index]
            if self.erasing is None:
                return sample
            return (*sample, self.erasing(sample[0].shape))


class _Keys(Sampler):
    """The keys a persistent loader's next pass reads, in order: set before each pass."""

    def __init__(self) -> None:
        self.keys: list = []

    def __iter__(self):
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


def ignore_interrupts(worker_id: int) -> None:
    """DataLoader worker start-up: Ctrl-C reaches the whole process group, but only the
    training process should act on it (stopping after the step); a worker that died of it
    would break the batches that step still needs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class PersistentLoaders:
    """One DataLoader per split (and batch size), its workers started at its first pass and
    kept (persistent_workers) until `close`: on a GPU machine, starting 8–16 workers and
    refilling their queues every epoch costs seconds that the GPU waits."""

    def __init__(self, workers: int, pin_memory: bool) -> None:
        self.workers, self.pin_memory = workers, pin_memory
        self.held: dict[str, tuple[int, DataLoader, _Keys]] = {}

    def get(self, split: str, dataset: Callable[[], Dataset], batch_size: int, keys: list):
        """The split's loader, reading `keys` in batches of `batch_size` on its next pass;
        built from `dataset()` at the split's first pass or a new batch size."""
        held = self.held.get(split)
        if held is None or held[0] != batch_size:
            sampler = _Keys()
            loader = _loader(dataset(), batch_size, sampler, self.workers, self.pin_memory)
            held = self.held[split] = (batch_size, loader, sampler)
        held[2].keys = keys
        return held[1]

    def close(self) -> None:
        self.held.clear()  # the loaders' iterators stop their workers as they go


def _loader(dataset: Dataset, batch_size: int, sampler: Sampler, workers: int, pin: bool):
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        worker_init_fn=ignore_interrupts,
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=workers > 0,
    )


def image_transforms(
    input_size: tuple[int, int, int],
    normalization: tuple,
    *,
    augment: bool = True,
    resize: int | None = None,
    interpolation=None,
    digits: bool = False,
    auto_augment: str | None = None,
    random_erase: float = 0.0,
) -> tuple[dict, Callable, Callable, Callable, DeviceNormalize]:
    """How image files become a model's input, for every source of image files (folders,
    shards): (the preprocessing for results.json, the evaluation transform, the same for
    showing an image (float in [0, 1]), the training transform, and the normalisation the
    engine applies on the device). The workers' transforms give photos as uint8 pixels and
    digits (prepared as MNIST was: resized, not representable in uint8) as float in [0, 1]."""
    channels, crop = input_size[0], input_size[1]
    mean, std = normalization
    resize = resize or round(crop / CROP_FRACTION)
    if resize < crop:
        raise UserError(f"--resize {resize} is smaller than the centre crop {crop}.")
    preprocessing = dict(
        resize=resize,
        crop=crop,
        mean=mean,
        std=std,
        channels=channels,
        preparation="digit" if digits else "photo",
    )
    extra = {"interpolation": interpolation} if interpolation is not None else {}
    if digits:  # as `convnet predict` prepares a file for a model trained on digits
        view = evaluate_transform = DigitPreprocess(input_size, 0.0, 1.0)
        device_normalize = DeviceNormalize(mean, std)
    else:
        evaluate_transform = evaluation_transform(
            resize, crop, mean, std, channels=channels, pixels=True, **extra
        )
        view = evaluation_transform(resize, crop, 0.0, 1.0, channels=channels, **extra)
        device_normalize = DeviceNormalize(
            tuple(evaluate_transform.mean), tuple(evaluate_transform.std)
        )
    train_transform = (
        training_transform(crop, mean, std, channels, pixels=True)
        if augment and not digits
        else evaluate_transform
    )
    if auto_augment or random_erase:
        train_transform = policy_transform(train_transform, auto_augment, random_erase)
    return preprocessing, evaluate_transform, view, train_transform, device_normalize


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
        transforms = image_transforms(
            input_size,
            normalization,
            augment=augment,
            resize=resize,
            interpolation=interpolation,
            digits=digits,
            auto_augment=auto_augment,
            random_erase=random_erase,
        )
        (
            self.preprocessing,
            self.evaluate_transform,
            self._view,
            self.train_transform,
            self.device_normalize,
        ) = transforms
        self.loaders = PersistentLoaders(workers, pin_memory)
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
        keys = [(seed, epoch, index) for index in order[start_batch * batch_size :].tolist()]
        loader = self.loaders.get("train", self._train_samples, batch_size, keys)
        for images, labels, positions, *erase in loader:
            if (labels < 0).any():  # undecodable: left out of the loss, listed by the engine
                self.failed_training.update(positions[labels < 0].tolist())
            yield Batch(images, labels, *erase)

    def _train_samples(self) -> _SeededSamples:
        dataset = FolderDataset(self.train_collection, self.train_transform)
        return _SeededSamples(dataset, self.train_transform.erasing)

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        indices = list(range(rank, self.eval_count, world_size))
        yield from self.loaders.get("eval", self._eval_samples, batch_size, indices)

    def _eval_samples(self) -> FolderDataset:
        return FolderDataset(self.eval_collection, self.evaluate_transform)

    def close(self) -> None:
        self.loaders.close()

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
