"""A `torch.utils.data.Dataset` of the user's own as a data source (the Python API:
`convnet.fit(model, data=dataset)` or `data=(train, validation)`), read through the same
interface as every other source, so it trains in the one loop.

Each item is (image, label): the image a tensor (C, H, W) — uint8 in 0–255 or float in
[0, 1] — or a PIL image, all of one size; the label a class index. A dataset with
`classes` (as torchvision's have) names them. Items are read in this process, one permutation
per epoch as for the other sources; a dataset whose own transform draws random numbers gets
PyTorch's generator seeded with (seed, epoch, index) before each item, so its augmentation is
reproducible and a resumed run continues exactly.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from convnet.data.sources import Batch, epoch_order, mix
from convnet.data.transforms import DeviceNormalize
from convnet.errors import UserError


def as_image(item: object, where: str) -> torch.Tensor:
    """A dataset's image as float (C, H, W) in [0, 1]; UserError naming `where` otherwise."""
    if isinstance(item, Image.Image):
        from torchvision.transforms.v2 import functional as TF

        item = TF.pil_to_tensor(item)
    if not isinstance(item, torch.Tensor) or item.dim() not in (2, 3):
        raise UserError(
            f"{where} is not an image: convnet.fit takes datasets of (image, label) pairs whose "
            "images are tensors (C, H, W), uint8 or float in [0, 1], or PIL images."
        )
    image = item[None] if item.dim() == 2 else item
    if image.dtype == torch.uint8:
        return image.float().div(255)
    image = image.float()
    low, high = torch.aminmax(image) if image.numel() else (0.0, 1.0)  # one pass
    if low < 0 or high > 1:  # 0–255, or normalised already
        raise UserError(
            f"{where} is a float image with values from {float(low):g} to "
            f"{float(high):g}; convnet takes float images in [0, 1] (or uint8 in 0–255) "
            "and normalises them itself. Divide by 255, or leave out the dataset's Normalize."
        )
    return image


def _label(item: object, where: str) -> int:
    """A class index: an integer (or an integer-valued number or one-element tensor) ≥ 0."""
    value = item.item() if isinstance(item, torch.Tensor) and item.numel() == 1 else item
    try:
        index = int(value)
        if index != value or index < 0:
            raise ValueError
        return index
    except (TypeError, ValueError):
        raise UserError(
            f"{where}'s label {value!r} is not a class index (0, 1, 2, …): convnet.fit takes "
            "(image, label) pairs whose label is the class's number."
        ) from None


def _where(dataset: Dataset, index: int, split: str) -> str:
    """How a refusal names an item: by its index in the user's own dataset where fit() split
    one Dataset into seeded subsets, else by its place in the split given."""
    if isinstance(dataset, Subset):
        return f"dataset item {dataset.indices[index]}"
    return f"{split} item {index}" if split else f"item {index}"


class DatasetSource:
    """Training and held-out items of the user's Datasets (the held-out one may be None:
    evaluation only needs `evaluation`)."""

    kind = "dataset"
    skipped: list = []
    failed_training: frozenset[int] = frozenset()  # read by the user's code: it raises

    def __init__(
        self,
        train: Dataset | None,
        evaluation: Dataset,
        normalization: tuple,
        class_names: tuple[str, ...] | None = None,
        name: str = "dataset",
    ) -> None:
        self.train, self.evaluation, self.name, self.eval_split = train, evaluation, name, "val"
        self.device_normalize = DeviceNormalize(*normalization)
        self.train_count = len(train) if train is not None else 0
        self.eval_count = len(evaluation)
        if self.eval_count == 0:
            raise UserError("The held-out dataset given to convnet has no items.")
        first, _ = self._item(evaluation, 0, "held-out")
        self.input_size = tuple(first.shape)
        labels = getattr(train, "classes", None) or getattr(evaluation, "classes", None)
        self.class_names = tuple(class_names or (str(name) for name in labels or ()))
        if not self.class_names:  # unnamed: classes 0 … the largest label of either split
            seen = [
                self._item(part, index, "")[1]
                for part in (train, evaluation)
                if part is not None
                for index in range(len(part))
            ]
            self.class_names = tuple(str(index) for index in range(max(seen) + 1))
        self.eval_batch_size = max(1, min(1000, 4_000_000 // max(1, first.numel())))

    def _item(self, dataset: Dataset, index: int, split: str) -> tuple[torch.Tensor, int]:
        """Item `index` of `dataset`, checked; `split` ("training", "held-out") names it in a
        refusal, "" where the size was checked already."""
        image, label = dataset[index]
        where = _where(dataset, index, split)
        image = as_image(image, where)
        if split and getattr(self, "input_size", image.shape) != tuple(image.shape):
            raise UserError(
                f"{where} is an image of {tuple(image.shape)}, but the first held-out item is "
                f"{self.input_size}: convnet.fit needs images of one size (resize them in "
                "the dataset's transform)."
            )
        return image, _label(label, where)

    def _stack(self, items: list[tuple[torch.Tensor, int]], split: str) -> Batch:
        """Float images in [0, 1] (normalised on the device) and their labels, checked."""
        images = torch.stack([image for image, _ in items])
        labels = torch.tensor([label for _, label in items])
        if labels.min() < 0 or labels.max() >= len(self.class_names):
            raise UserError(
                f"A {split} label is outside the {len(self.class_names)} classes "
                f"({', '.join(self.class_names[:5])}…)."
            )
        return Batch(images, labels)

    def train_batches(
        self,
        epoch: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> Iterator[Batch]:
        order = epoch_order(self.train_count, seed, epoch, rank, world_size).tolist()
        for start in range(start_batch * batch_size, len(order), batch_size):
            items = []
            with torch.random.fork_rng(devices=[]):
                for index in order[start : start + batch_size]:
                    # the dataset's own transform draws from (seed, epoch, index)
                    torch.default_generator.manual_seed(mix(seed, epoch, index))
                    items.append(self._item(self.train, index, "training"))
            yield self._stack(items, "training")

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        positions = list(range(rank, self.eval_count, world_size))
        for start in range(0, len(positions), batch_size):
            indices = positions[start : start + batch_size]
            items = [self._item(self.evaluation, i, "held-out") for i in indices]
            images, labels, _ = self._stack(items, "held-out")
            yield images, labels, torch.tensor(indices)

    def eval_image(self, index: int) -> torch.Tensor:
        return self._item(self.evaluation, index, "")[0]

    def eval_label(self, index: int) -> int:
        return self._item(self.evaluation, index, "")[1]

    def training_failure(self, index: int) -> tuple[str, str]:
        return f"training item {index}", "unreadable"

    def failure(self, index: int) -> tuple[str, str]:
        return f"held-out item {index}", "unreadable"

    def close(self) -> None:
        """Nothing to stop: items are read in this process."""
