"""Image files on disk as a data source (`FolderSource`: class folders, ILSVRC2012), and
what every source of image files shares (the shards' too, convnet/data/shard_source.py): the
transforms from a model's input size (`image_transforms`) and DataLoader workers started once
per split and kept across epochs (`PersistentLoaders`), fed keys (seed, epoch, index) so each
image's draws do not depend on the worker that decodes it. The contract they keep is
convnet/data/sources.py's."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from convnet.data.folders import FolderDataset, ImageCollection, open_image_collection
from convnet.data.preparation import (
    DECODE_ERRORS,
    DigitPreprocess,
    decode_failure,
    decode_image,
    evaluation_transform,
    policy_transform,
    training_transform,
)
from convnet.data.sources import Batch, epoch_order, mix
from convnet.data.transforms import DeviceNormalize
from convnet.errors import UserError

# Resize before the centre crop for evaluation: torchvision's 256 → 224 ratio.
CROP_FRACTION = 0.875


class _SeededSamples(Dataset):
    """Training samples by key (seed, epoch, index): each sample's random augmentation drawn
    from those numbers, its random erasing's rectangle last (`ErasingDraw`), so the
    workers, which keep this dataset for the whole run, need only the keys of an epoch.
    Only the CPU's generator is seeded (the transforms draw there): `torch.manual_seed`
    visits every device, and before CUDA starts it formats the caller's stack for each."""

    def __init__(self, dataset: Dataset, erasing: Callable | None = None) -> None:
        self.dataset, self.erasing = dataset, erasing

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int, int]):
        seed, epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(mix(seed, epoch, index))  # CPU draws only
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


@dataclass(frozen=True)
class ImageTransforms:
    """What `image_transforms` makes, read by every source of image files."""

    preprocessing: dict
    evaluate: Callable
    view: Callable
    train: Callable
    device_normalize: DeviceNormalize

    def adopted_by(self, source) -> None:
        """Set them on `source` under the names the engine and the commands read."""
        source.preprocessing, source.evaluate_transform = self.preprocessing, self.evaluate
        source._view, source.train_transform = self.view, self.train
        source.device_normalize = self.device_normalize


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
) -> ImageTransforms:
    """How image files become a model's input, for every source of image files (folders,
    shards): the preprocessing for results.json, the evaluation transform, the same for
    showing an image (float in [0, 1]), the training transform, and the normalisation the
    engine applies on the device. The workers' transforms give photos as uint8 pixels and
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
    return ImageTransforms(
        preprocessing, evaluate_transform, view, train_transform, device_normalize
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
        image_transforms(
            input_size,
            normalization,
            augment=augment,
            resize=resize,
            interpolation=interpolation,
            digits=digits,
            auto_augment=auto_augment,
            random_erase=random_erase,
        ).adopted_by(self)
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
        """The `index`-th held-out image prepared (C, H, W); zeros where it cannot be decoded."""
        try:
            return self.read_eval_image(index)
        except (*DECODE_ERRORS, UserError):
            crop = self.preprocessing["crop"]
            return torch.zeros(self.preprocessing["channels"], crop, crop)

    def read_eval_image(self, index: int) -> torch.Tensor:
        """`eval_image`, raising the decoder's error (or UserError) where the file is unreadable."""
        return self._view(getattr(self._view, "decode", decode_image)(self.eval_path(index)))

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
