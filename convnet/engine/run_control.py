"""Run control of folder training: the data order, reproducible per-sample augmentation,
and stopping on a signal after a whole step.

Data order: one permutation per epoch, seeded by (seed, epoch), of which rank r takes
positions r, r + W, r + 2W, … (DistributedSampler), optionally starting part-way into the
epoch. Each image's random crop and flip come from a generator seeded by (seed, epoch,
image index), so they do not depend on the process, worker or batch that loads it.
"""

from __future__ import annotations

import itertools
import signal
import threading

import torch
from torch.utils.data import Dataset, DistributedSampler


def mix(*numbers: int) -> int:
    """One seed from several counters (seed, epoch, index), below 2**63."""
    value = 0
    for number in numbers:
        value = (value * 1_000_003 + number) % (2**63)
    return value


class SeededSamples(Dataset):
    """Each sample's random augmentation drawn from a generator seeded by (seed, epoch,
    index): the same image gets the same crop in every run, on any rank, and after resume."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(mix(self.seed, self.epoch, index))
            return self.dataset[index]


class ResumableSampler(DistributedSampler):
    """DistributedSampler that can start `skip` samples into its epoch (resume mid-epoch)."""

    skip = 0

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip


class StopRequests:
    """While active, SIGINT or SIGTERM (torchrun forwards it; clusters send it before
    preemption) asks training to stop after the current step; a second Ctrl-C stops at once."""

    def __init__(self) -> None:
        self.requested, self._previous = False, {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}


def ignore_interrupts(worker_id: int) -> None:
    """DataLoader worker start-up: Ctrl-C reaches the whole process group, but only the
    training process should act on it (stopping after the step); a worker that died of it
    would break the batches that step still needs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
