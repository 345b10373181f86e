"""The order in which a run trains on its shards: a pure function of (seed, epoch), the
number of streams G and the manifest's counts, computed before a byte is read.

Each epoch:

1. The training shards are put in a random order seeded by (seed, epoch), and their N images
   are laid end to end in that order.
2. The line is cut into G streams of L = ceil(N / G) images each, the last padded by
   repeating the line's first images (as the folder source pads with its first images).
   Stream g reads its stretch of shards in turn: whole shards, except where a stretch begins
   or ends inside one.
3. Each stream passes its images through a shuffle buffer of BUFFER images seeded by
   (seed, epoch, g): after BUFFER images have arrived, each new one takes the place of one
   drawn at random, which goes out.
4. The streams are dealt round-robin: position p of the epoch is image p // G of stream
   p % G. A step with global batch size S takes positions s·S … (s + 1)·S − 1.

Rank r of W (W must divide G) owns the streams r, r + W, …; the positions it trains on are
then exactly r, r + W, …: the folder source's rule. So a step's images are the same whatever
the number of processes sharing them, and a run on W processes with batch B trains on the
images of a one-process run with batch W·B and the same G, step by step; each rank reads
only its own streams' shards. A rank's streams are shared out among its DataLoader workers.

The buffer's order is computed here from the counts alone, so a run resumed in the middle of
an epoch reads on from where the stream stood, with the images then in its buffer, rather
than replaying the epoch: resume is exact at any step. WebDataset's own `shuffle` draws from
a generator it keeps in the worker, whose state a checkpoint cannot hold.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from convnet.data.sources import mix

# Images per stream's shuffle buffer: WebDataset's documentation shuffles with 1,000, which
# holds about 110 MB of ImageNet JPEGs (their mean is ~110 KB) per stream.
BUFFER = 1000
BUFFER_SALT = 4  # the (seed, epoch, salt, stream) of the buffer's draws; 1–3 are augmentations'


@dataclass(frozen=True)
class Piece:
    """`count` consecutive images of shard `shard` (its index in the split), from `first`."""

    shard: int
    first: int
    count: int


def pieces_of(counts: list[int], limit: int | None = None) -> list[Piece]:
    """The shards' images as pieces, whole, or the first `limit` images in shard order."""
    pieces, left = [], math.inf if limit is None else limit
    for shard, count in enumerate(counts):
        take = int(min(count, left))
        if take > 0:
            pieces.append(Piece(shard, 0, take))
        left -= take
    return pieces


def buffer_order(length: int, size: int, seed: int) -> np.ndarray:
    """The order in which a shuffle buffer of `size` hands out `length` arrivals: output t is
    an arrival no later than t + size, so a reader holds at most `size` images."""
    draws = torch.randint(
        0, max(size, 1), (max(length - size, 0),), generator=torch.Generator().manual_seed(seed)
    ).tolist()
    order = np.empty(length, dtype=np.int64)
    buffer = list(range(min(size, length)))
    for out, (arrival, slot) in enumerate(zip(range(size, length), draws, strict=True)):
        order[out] = buffer[slot]
        buffer[slot] = arrival
    rest = torch.randperm(len(buffer), generator=torch.Generator().manual_seed(seed + 1)).tolist()
    order[max(length - size, 0) :] = [buffer[i] for i in rest]
    return order


class EpochPlan:
    """One epoch's order (see the module's docstring)."""

    def __init__(self, pieces: list[Piece], streams: int, seed: int, epoch: int) -> None:
        generator = torch.Generator().manual_seed(mix(seed, epoch))
        self.pieces = [pieces[i] for i in torch.randperm(len(pieces), generator=generator)]
        self.starts = [0, *itertools.accumulate(piece.count for piece in self.pieces)][:-1]
        self.images = sum(piece.count for piece in self.pieces)
        self.streams, self.seed, self.epoch = streams, seed, epoch
        self.length = math.ceil(self.images / streams)  # L, images per stream

    @property
    def positions(self) -> int:
        """Images trained on per epoch over all ranks: G·L (N and the padding)."""
        return self.streams * self.length

    def order(self, stream: int) -> np.ndarray:
        """The arrivals (0 … L − 1) of `stream` in the order its buffer hands them out."""
        return buffer_order(
            self.length, BUFFER, mix(self.seed, self.epoch, BUFFER_SALT, stream) % 2**62
        )

    def window(self, step: int, global_batch: int) -> range:
        """The positions of step `step` (the last step may be shorter)."""
        return range(step * global_batch, min((step + 1) * global_batch, self.positions))

    def runs(self, stream: int, first: int) -> Iterator[tuple[int, int, int, int]]:
        """(arrival, shard, first image, count): stream `stream`'s arrivals `first` … L − 1
        as runs of consecutive images of one shard, in order."""
        start, stop = stream * self.length + first, (stream + 1) * self.length
        position = start
        while position < stop:
            line = position % self.images  # past the end: the padding repeats the start
            index = bisect.bisect_right(self.starts, line) - 1
            piece, within = self.pieces[index], line - self.starts[index]
            take = min(piece.count - within, stop - position)
            yield position - stream * self.length, piece.shard, piece.first + within, take
            position += take


def stream_range(stream: int, streams: int, positions: range) -> range:
    """The arrivals-in-order indices i of `stream` whose positions i·G + stream lie in
    `positions`."""
    first = max(0, -(-(positions.start - stream) // streams))
    stop = max(0, -(-(positions.stop - stream) // streams))
    return range(first, max(first, stop))


def largest_divisor(value: int, most: int) -> int:
    """The largest divisor of `value` that is at most `most` (at least 1)."""
    return max(d for d in range(1, max(1, min(value, most)) + 1) if value % d == 0)
