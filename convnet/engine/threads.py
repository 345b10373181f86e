"""CPU threads: the one load-aware choice every compute command and the Python API make.

A thread that has no core of its own mostly waits: an OpenMP step ends when its slowest
thread does, so a small network trained ten times slower with two threads than with one on
a shared 2-core machine (14× for `convnet train` with PyTorch's default count, issue 18).
So the automatic count is the number of cores idle right now, measured over a tenth of a
second from /proc/stat, between 1 and PyTorch's default. The one-minute load average, used
before, lags by a minute and counts waiting and finished work: at load 2 on 2 cores it gave
one thread even when the other core was idle (issue 31). Where /proc/stat is missing, the
load average still decides.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

SAMPLE_SECONDS = 0.1  # long enough for a few scheduler ticks (100 Hz), short beside any command


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) clock ticks of all CPUs since boot, from /proc/stat; None elsewhere."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(value) for value in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[3] + ticks[4], sum(ticks)


def idle_cpus(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many CPUs were idle over the next `seconds` (e.g. 1.0 of 2 while another program
    keeps one core busy); None where /proc/stat cannot say."""
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return None
    share = (after[0] - before[0]) / (after[1] - before[1])
    return share * (os.cpu_count() or 1)


def automatic_threads(
    idle: float | None = None,
    cpus: int | None = None,
    default: int | None = None,
    load_average: float | None = None,
) -> int:
    """As many threads as cores are idle (`idle`, measured now by default; rounded, at
    least 1, at most PyTorch's `default`); where idleness cannot be measured, `default`, or
    1 when the one-minute load average is at least the number of CPUs. Tests pass their
    own arguments."""
    if default is None:
        import torch

        default = torch.get_num_threads()
    if idle is None and load_average is None:
        idle = idle_cpus()
    if idle is not None:
        return max(1, min(default, int(idle + 0.5)))
    if load_average is None:
        load_average = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    cpus = cpus or os.cpu_count() or 1
    return 1 if load_average >= cpus else default


# Whether the count in use is the automatic choice (no --threads given): a resumed run then
# takes the count it trained with (resume_threads).
_chosen = {"automatically": False}


@contextlib.contextmanager
def cpu_threads(threads: int = 0) -> Iterator[int]:
    """Run the block with `threads` CPU threads (0: `automatic_threads()`), then restore."""
    import torch

    before, automatic = torch.get_num_threads(), _chosen["automatically"]
    try:
        yield use_threads(threads)
    finally:
        torch.set_num_threads(before)
        _chosen["automatically"] = automatic


def use_threads(threads: int = 0) -> int:
    """Set the thread count for the rest of the process (a command): `threads`, or the
    automatic choice for 0; returns the count chosen."""
    import torch

    chosen = threads or automatic_threads()
    torch.set_num_threads(chosen)
    _chosen["automatically"] = not threads
    return chosen


def resume_threads(recorded: int | None) -> int | None:
    """A resumed run's thread count: the `recorded` one it trained with, where the count in
    use was chosen automatically, differs and the machine has that many CPUs (another count
    sums in another order, so the run would not continue bit for bit). Returns the count it
    switched to, else None (--threads given, the same count, or too few CPUs)."""
    import torch

    if not _chosen["automatically"] or not recorded or recorded == torch.get_num_threads():
        return None
    if recorded > (os.cpu_count() or 1):
        return None
    torch.set_num_threads(recorded)
    return recorded
