"""CPU threads: the automatic choice on a busy machine."""

from __future__ import annotations

import subprocess
import sys

import pytest

from convnet.engine import threads


@pytest.mark.parametrize(
    ("idle", "expected"), [(2.0, 2), (1.6, 2), (1.4, 1), (1.0, 1), (0.2, 1), (0.0, 1), (7.5, 2)]
)
def test_the_automatic_thread_count_is_the_number_of_idle_cores(idle, expected):
    assert threads.automatic_threads(idle, default=2) == expected


@pytest.mark.parametrize(
    ("load_average", "cpus", "expected"),
    [(0.3, 2, 2), (1.9, 2, 2), (2.0, 2, 1), (5.4, 2, 1), (5.4, 16, 2)],
)
def test_without_proc_stat_the_load_average_decides(load_average, cpus, expected, monkeypatch):
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)
    assert threads.idle_cpus() is None
    assert threads.automatic_threads(cpus=cpus, default=2, load_average=load_average) == expected
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load_average, 0.0, 0.0))
    monkeypatch.setattr(threads.os, "cpu_count", lambda: cpus)
    assert threads.automatic_threads(default=2) == expected


@pytest.mark.skipif(threads._cpu_times() is None, reason="no /proc/stat here")
def test_a_core_kept_busy_is_not_counted_as_idle():
    """One spinning process takes one core: at most cpus − 1 stay idle (± a tenth)."""
    cpus = threads.os.cpu_count() or 1
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        threads.idle_cpus(0.2)  # let it start
        assert threads.idle_cpus(0.5) <= cpus - 1 + 0.1
    finally:
        spinner.kill()
        spinner.wait()


def test_a_resumed_run_takes_its_thread_count_unless_threads_are_given(monkeypatch):
    """Another thread count sums in another order: a resumed run continues bit for bit only
    on the count it trained with, so the automatic choice gives way to it; --threads wins."""
    import torch

    monkeypatch.setattr(threads, "automatic_threads", lambda: 1)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    before, automatic = torch.get_num_threads(), threads._chosen["automatically"]
    try:
        with threads.cpu_threads(0):
            assert threads.resume_threads(None) is None  # a checkpoint from before the record
            assert threads.resume_threads(8) is None  # more CPUs than this machine has
            assert threads.resume_threads(2) == 2 and torch.get_num_threads() == 2
        with threads.cpu_threads(1):  # --threads 1 given
            assert threads.resume_threads(2) is None and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert threads._chosen["automatically"] == automatic  # restored with the count
