"""Tar shards as a data source (`--data OUT`, a folder `convnet data shard` wrote, or a brace
pattern of its shards): the same contract as the image folders (convnet/data/sources.py),
read as streams instead of files one by one.

Training follows the epoch plan of convnet/data/shard_plan.py: G streams of the epoch's
shuffled shards, each through a seeded shuffle buffer, dealt round-robin, rank r of W taking
the streams r, r + W, … (W must divide G; G defaults to the first run's processes × workers,
and is kept in the run's configuration). A rank's streams are shared by its DataLoader
workers (as many as divide them); each worker decodes its images of a step and the rank's
batch is put back in position order, so it does not depend on the number of workers.

Each image is decoded and prepared as a folder's image is (the same transforms), its random
augmentation drawn from (seed, epoch, its index in the split): a shard run and a folder run
of the same images score the same. An image that cannot be used (no label, a label outside
the classes, undecodable, missing from a truncated shard) keeps its place as label -1, left
out of the loss and listed with its shard (`training_failure`, `failure`), as a folder's
undecodable file is: with --strict the engine stops at the epoch's end (an evaluation, once
scored), and the files the manifest lists as left out while writing are refused at once.
Each shard is checked against its manifest (size and SHA-256) before
a process first reads from it (`verify_shard`), which reads it whole once; a shard that
differs is refused. The shards checked are marked in shared memory, so the source's
workers, kept across epochs as a folder's are, check each shard once between them.

Evaluation reads the held-out shards in the manifest's order, rank r taking shards r, r + W,
…: every image once, scored as the folder's.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from convnet.data.folder_source import ignore_interrupts, image_transforms
from convnet.data.ilsvrc import listing
from convnet.data.preparation import DECODE_ERRORS, decode_image
from convnet.data.shard_manifest import Shard, is_pattern, open_shards, verify_shard
from convnet.data.shard_plan import EpochPlan, Piece, largest_divisor, pieces_of, stream_range
from convnet.data.shard_reader import RawSample, read_samples
from convnet.data.sources import Batch, mix
from convnet.errors import UserError
from convnet.wording import counted


class _Reader:
    """What a worker needs to turn samples into tensors: the shards, the class numbering,
    a transform, and which shards have been verified (a bool per shard, in shared memory)."""

    def __init__(self, shards, remap, transform, blank, verified: torch.Tensor) -> None:
        self.shards, self.remap, self.transform = shards, remap, transform
        self.decode = getattr(transform, "decode", decode_image)
        self.blank, self.verified = blank, verified
        self.erasing = getattr(transform, "erasing", None)

    def samples(self, shard: int, first: int, count: int) -> Iterator[RawSample]:
        entry = self.shards[shard]
        if not self.verified[shard]:
            verify_shard(entry)
            self.verified[shard] = True
        yield from read_samples(entry, first, count, len(self.remap))

    def prepare(self, raw: RawSample, epoch_seed: tuple[int, int] | None):
        """(tensor, label, why, erase): the prepared image, or a blank with label -1 and the
        reason; with random erasing, its rectangle, drawn after the image's other draws."""
        with torch.random.fork_rng(devices=[]):
            if epoch_seed is not None:  # the image's own draws: (seed, epoch, index)
                torch.default_generator.manual_seed(mix(*epoch_seed, raw.index))
            image, label = self._prepared(raw)
            erase = self.erasing(image.shape) if self.erasing else None
        return image, label, raw.why, erase

    def _prepared(self, raw: RawSample) -> tuple[torch.Tensor, int]:
        if raw.why is None:
            try:
                image = self.decode(raw.image)
                image.filename = f"sample {raw.key}"  # for the digit preparation's messages
                return self.transform(image), self.remap[raw.label]
            except (*DECODE_ERRORS, UserError) as error:
                text = str(error).strip().splitlines()[0] if str(error).strip() else ""
                raw.why = f"sample {raw.key} cannot be decoded ({type(error).__name__}: {text})"
        return self.blank, -1

    def chunk(self, prepared: list, indices: list[int], positions: list[int]) -> dict:
        """One worker's share of a batch, and what the main process must learn."""
        pairs = zip(prepared, indices, strict=True)
        empty = len(prepared) == 0
        erase = None  # random erasing's rectangles, (N, 4)
        if self.erasing is not None:
            erase = (
                torch.zeros(0, 4, dtype=torch.long)
                if empty
                else torch.stack([p[3] for p in prepared])
            )
        return {
            "images": self.blank[None, :0] if empty else torch.stack([p[0] for p in prepared]),
            "labels": torch.tensor([p[1] for p in prepared], dtype=torch.long),
            "indices": torch.tensor(indices, dtype=torch.long),
            "positions": torch.tensor(positions, dtype=torch.long),
            "erase": erase,
            "failures": [(index, why) for (_, _, why, _), index in pairs if why],
            "error": None,
        }


def _worker() -> tuple[int, int]:
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class _TrainStreams(IterableDataset):
    """One rank's streams; each worker yields its chunk of every step of the epoch that
    `epoch` (in shared memory: seed, epoch, first step) names when a pass begins, so the
    workers are started once and kept from epoch to epoch."""

    def __init__(
        self,
        reader: _Reader,
        pieces: list[Piece],
        streams: int,
        rank: int,
        world_size: int,
        batch_size: int,
    ) -> None:
        self.reader, self.pieces, self.streams = reader, pieces, streams
        self.rank, self.world_size, self.global_batch = rank, world_size, world_size * batch_size
        self.epoch = torch.zeros(3, dtype=torch.long).share_memory_()

    def steps(self, plan: EpochPlan) -> int:
        return math.ceil(plan.positions / self.global_batch)

    def _stream(self, plan: EpochPlan, stream: int, first: int) -> Iterator[RawSample]:
        """Stream `stream`'s samples from its `first` output on, in its buffer's order."""
        order = plan.order(stream)
        if first >= plan.length:
            return
        needed = np.zeros(plan.length, dtype=bool)
        needed[order[first:]] = True
        arrivals = (
            (arrival + offset, raw)
            for arrival, shard, image, count in plan.runs(stream, int(order[first:].min()))
            for offset, raw in enumerate(self.reader.samples(shard, image, count))
        )
        pending: dict[int, RawSample] = {}  # arrived and not yet handed out: the buffer
        for wanted in order[first:].tolist():
            while wanted not in pending:
                arrival, raw = next(arrivals)
                if needed[arrival]:
                    pending[arrival] = raw
            yield pending.pop(wanted)

    def __iter__(self):
        worker, workers = _worker()
        seed, epoch, start = self.epoch.tolist()
        plan, streams = EpochPlan(self.pieces, self.streams, seed, epoch), self.streams
        own = list(range(self.rank, streams, self.world_size))[worker::workers]
        first = plan.window(start, self.global_batch)
        readers = {g: self._stream(plan, g, stream_range(g, streams, first).start) for g in own}
        try:
            for step in range(start, self.steps(plan)):
                window = plan.window(step, self.global_batch)
                taken = sorted(
                    (i * streams + g, g) for g in own for i in stream_range(g, streams, window)
                )
                raws = [next(readers[g]) for _, g in taken]
                prepared = [self.reader.prepare(raw, (seed, epoch)) for raw in raws]
                yield self.reader.chunk(prepared, [r.index for r in raws], [p for p, _ in taken])
        except UserError as error:  # a shard that is not the manifest's: the main process stops
            yield {"error": str(error)}


class _EvalShards(IterableDataset):
    """One rank's held-out pieces, whole shards shared among its workers, in batches."""

    def __init__(self, reader: _Reader, pieces: list[Piece], batch_size: int) -> None:
        self.reader, self.pieces, self.batch_size = reader, pieces, batch_size

    def __iter__(self):
        worker, workers = _worker()
        prepared, indices = [], []
        try:
            for piece in self.pieces[worker::workers]:
                for raw in self.reader.samples(piece.shard, piece.first, piece.count):
                    prepared.append(self.reader.prepare(raw, None))
                    indices.append(raw.index)
                    if len(prepared) == self.batch_size:
                        yield self.reader.chunk(prepared, indices, indices)
                        prepared, indices = [], []
            if prepared:
                yield self.reader.chunk(prepared, indices, indices)
        except UserError as error:
            yield {"error": str(error)}


class ShardSource:
    """WebDataset shards with their manifest: a training split and a held-out split."""

    kind = "images"
    layout = "shards"

    def __init__(
        self,
        data: str | Path,
        input_size: tuple[int, int, int],
        normalization: tuple,
        *,
        classes: tuple[str, ...] | None = None,
        augment: bool = True,
        strict: bool = False,
        workers: int = 2,
        train: bool = True,
        eval_split: str = "val",
        train_subset: int | None = None,
        test_subset: int | None = None,
        resize: int | None = None,
        interpolation=None,
        pin_memory: bool = False,
        digits: bool = False,
        auto_augment: str | None = None,
        random_erase: float = 0.0,
        streams: int | None = None,
        world_size: int = 1,
    ) -> None:
        shard_set = open_shards(data)
        self.name = str(data) if is_pattern(str(data)) else str(shard_set.root)
        self.eval_split = "val" if eval_split == "all" else eval_split
        for split in ("train", self.eval_split) if train else (self.eval_split,):
            if not shard_set.shards.get(split):
                hint = (
                    " A pattern names every shard read, of both splits: e.g. "
                    "'OUT/{train-{000000..000009},val-000000}.tar'."
                    if is_pattern(str(data))
                    else ""
                )
                raise UserError(f"{self.name} names no {split} shards.{hint}")
        self.class_names = tuple(classes) if classes else shard_set.classes
        unknown = [name for name in shard_set.classes if name not in self.class_names]
        if unknown:
            raise UserError(
                f"{self.name} has classes this model has no class for: {', '.join(unknown[:10])}"
                f"{' …' if len(unknown) > 10 else ''}. Its classes are "
                f"{', '.join(self.class_names[:10])}{' …' if len(self.class_names) > 10 else ''}."
            )
        self.remap = [self.class_names.index(name) for name in shard_set.classes]
        self.train_shards = shard_set.shards.get("train", []) if train else []
        self.eval_shards = shard_set.shards[self.eval_split]
        self.train_pieces = pieces_of([s.images for s in self.train_shards], train_subset)
        self.eval_pieces = pieces_of([s.images for s in self.eval_shards], test_subset)
        self.train_count = sum(piece.count for piece in self.train_pieces)
        self.eval_count = sum(piece.count for piece in self.eval_pieces)
        self.skipped = [
            *(shard_set.skipped.get("train", []) if train else []),
            *shard_set.skipped.get(self.eval_split, []),
        ]
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
        self.blank_shape = tuple(
            getattr(self.evaluate_transform, "shape", None)
            or self.evaluate_transform(Image.new("RGB", (300, 300))).shape
        )
        if strict and self.skipped:
            raise UserError(
                f"--strict: {self.name} was written without {counted(len(self.skipped), 'file')}: "
                f"{listing([f'{path} ({why})' for path, why in self.skipped])}. "
                "Replace them and write the shards again, or run without --strict."
            )
        self.workers, self.pin_memory = workers, pin_memory
        self.streams = streams or world_size * max(1, workers)
        if train and self.streams % world_size:
            raise UserError(
                f"This run reads its shards as {self.streams} streams, which {world_size} "
                f"processes cannot share evenly; use a process count that divides "
                f"{self.streams} (or start a new run, whose --shard-streams may differ)."
            )
        self.eval_batch_size = 64
        # whether each shard's SHA-256 was checked, by this process or one of its workers
        self.verified = {
            "train": torch.zeros(len(self.train_shards), dtype=torch.bool).share_memory_(),
            "eval": torch.zeros(len(self.eval_shards), dtype=torch.bool).share_memory_(),
        }
        self.failed_training: set[int] = set()
        self._why: dict[tuple[str, int], str] = {}  # (split, index): why it was not used
        # the persistent loaders: training's with its streams, evaluation's by batch size
        self._train: tuple[int, DataLoader, _TrainStreams] | None = None
        self._eval: tuple[int, DataLoader] | None = None

    @property
    def epoch_length(self) -> int:
        """Images trained on per epoch over all ranks, the padding included."""
        return self.streams * math.ceil(self.train_count / self.streams)

    def _reader(self, split: str, transform: Callable) -> _Reader:
        shards = self.train_shards if split == "train" else self.eval_shards
        blank = torch.zeros(self.blank_shape, dtype=getattr(transform, "dtype", torch.float32))
        return _Reader(shards, self.remap, transform, blank, self.verified[split])

    def _loader(self, dataset: IterableDataset, workers: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            worker_init_fn=ignore_interrupts,
            prefetch_factor=4 if workers > 0 else None,
            persistent_workers=workers > 0,
        )

    def _receive(self, chunk: dict, split: str) -> dict:
        """Learn from a worker's chunk: a refused shard, unusable images (which the engine
        lists, or refuses with --strict, as a folder's undecodable files)."""
        if chunk.get("error"):
            raise UserError(chunk["error"])
        for index, why in chunk["failures"]:
            self._why[(split, index)] = why
            if split == "train":
                self.failed_training.add(index)
        return chunk

    def train_batches(
        self,
        epoch: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> Iterator[Batch]:
        workers = largest_divisor(self.streams // world_size, self.workers) if self.workers else 0
        if self._train is None or self._train[0] != batch_size:
            reader = self._reader("train", self.train_transform)
            streams = _TrainStreams(
                reader, self.train_pieces, self.streams, rank, world_size, batch_size
            )
            self._train = (batch_size, self._loader(streams, workers), streams)
        _, loader, streams = self._train
        streams.epoch.copy_(torch.tensor([seed, epoch, start_batch]))  # read as a pass begins
        steps = streams.steps(EpochPlan(self.train_pieces, self.streams, seed, epoch))
        chunks = iter(loader)
        for _ in range(start_batch, steps):
            parts = [self._receive(next(chunks), "train") for _ in range(max(workers, 1))]
            yield self._in_position_order(parts)

    def _in_position_order(self, parts: list[dict]) -> Batch:
        """The workers' chunks as one batch, in position order: one copy, whatever the workers."""
        positions = torch.cat([part["positions"] for part in parts])
        destination = torch.empty_like(positions)
        destination[positions.argsort()] = torch.arange(len(positions))
        images = torch.empty(
            (len(positions), *self.blank_shape),
            dtype=parts[0]["images"].dtype,
            pin_memory=self.pin_memory,
        )
        labels = torch.empty(len(positions), dtype=torch.long)
        erasing = parts[0]["erase"] is not None
        erase = torch.empty(len(positions), 4, dtype=torch.long) if erasing else None
        start = 0
        for part in parts:
            rows = destination[start : start + len(part["positions"])]
            images.index_copy_(0, rows, part["images"])
            labels.index_copy_(0, rows, part["labels"])
            if erase is not None:
                erase.index_copy_(0, rows, part["erase"])
            start += len(rows)
        return Batch(images, labels, erase)

    def eval_batches(self, batch_size: int, rank: int = 0, world_size: int = 1):
        if self._eval is None or self._eval[0] != batch_size:
            pieces = self.eval_pieces[rank::world_size]
            shards = _EvalShards(self._reader("eval", self.evaluate_transform), pieces, batch_size)
            self._eval = (batch_size, self._loader(shards, min(self.workers, len(pieces))))
        for chunk in self._eval[1]:
            self._receive(chunk, "eval")
            yield chunk["images"], chunk["labels"], chunk["indices"]

    def close(self) -> None:
        """Stop the workers (their loaders stop them as they go)."""
        self._train = self._eval = None

    def _place(self, split: str, index: int) -> tuple[str, Shard]:
        shards = self.train_shards if split == "train" else self.eval_shards
        shard = shards[bisect.bisect_right([s.offset for s in shards], index) - 1]
        return str(shard.path), shard

    def eval_image(self, index: int) -> torch.Tensor:
        _, shard = self._place("eval", index)
        reader = self._reader("eval", self._view)
        raw = next(reader.samples(self.eval_shards.index(shard), index - shard.offset, 1))
        return reader.prepare(raw, None)[0]

    def eval_label(self, index: int) -> int:
        """The class of held-out image `index` (-1 where its sample has none usable)."""
        _, shard = self._place("eval", index)
        reader = self._reader("eval", self._view)
        raw = next(reader.samples(self.eval_shards.index(shard), index - shard.offset, 1))
        return self.remap[raw.label] if raw.why is None else -1

    def training_failure(self, index: int) -> tuple[str, str]:
        return self._place("train", index)[0], self._why.get(("train", index), "unusable")

    def failure(self, index: int) -> tuple[str, str]:
        return self._place("eval", index)[0], self._why.get(("eval", index), "unusable")
