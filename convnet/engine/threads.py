"""CPU threads: the one load-aware choice every compute command and the Python API make.

On a machine already busier than it has cores, a second OpenMP thread mostly waits for a
core: a small network trained ten times slower with two threads than with one on a shared
2-core machine (14× for `convnet train` with PyTorch's default thread count, issue 18).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def automatic_threads(
    load_average: float | None = None, cpus: int | None = None, default: int | None = None
) -> int:
    """PyTorch's default thread count (`default`), or 1 when the one-minute load average is
    at least the number of CPUs. The arguments default to this machine's; tests pass their
    own."""
    if load_average is None:
        load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cpus = cpus or os.cpu_count() or 1
    if default is None:
        import torch

        default = torch.get_num_threads()
    return 1 if load_average >= cpus else default


@contextlib.contextmanager
def cpu_threads(threads: int = 0) -> Iterator[int]:
    """Run the block with `threads` CPU threads (0: `automatic_threads()`), then restore."""
    import torch

    before = torch.get_num_threads()
    chosen = threads or automatic_threads()
    torch.set_num_threads(chosen)
    try:
        yield chosen
    finally:
        torch.set_num_threads(before)


def use_threads(threads: int = 0) -> int:
    """Set the thread count for the rest of the process (a command): `threads`, or the
    automatic choice for 0; returns the count chosen."""
    import torch

    chosen = threads or automatic_threads()
    torch.set_num_threads(chosen)
    return chosen
