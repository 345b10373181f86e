"""Experiments that measure the lecture's claims; each returns a result dataclass.

Plotting and pages live in convnet/report; the command line in convnet/commands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch


def automatic_threads() -> int:
    """PyTorch's default thread count, or 1 when the machine is already busier than it has
    cores: there a second OpenMP thread mostly waits for a core, and a small network trains
    ten times slower with two threads than with one (measured on a shared 2-core machine)."""
    busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    return 1 if busy else torch.get_num_threads()


@contextlib.contextmanager
def cpu_threads(threads: int = 0) -> Iterator[int]:
    """Run the block with `threads` CPU threads (0: `automatic_threads()`), then restore."""
    before = torch.get_num_threads()
    chosen = threads or automatic_threads()
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)


@dataclass
class CachedRunSettings:
    """What the experiments that train (and cache) their runs share."""

    train_subset: int | None = None  # None: all training images
    test_subset: int | None = None  # None: all test images
    runs_dir: str = "runs/experiments"
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    data_dir: str | None = None
    reuse_only: bool = False  # never train; fail if a run is missing
    threads: int = 0  # CPU threads; 0: automatic (see automatic_threads)
