"""Experiments that measure the lecture's claims; each returns a result dataclass.

Plotting and pages live in convnet/report; the command line in convnet/commands.
"""

from __future__ import annotations

from dataclasses import dataclass

from convnet.engine.threads import automatic_threads, cpu_threads

__all__ = ["CachedRunSettings", "automatic_threads", "cpu_threads"]


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
