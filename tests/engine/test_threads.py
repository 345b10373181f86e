"""CPU threads: the automatic choice on a busy machine."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("load_average", "cpus", "expected"),
    [(0.3, 2, 2), (1.9, 2, 2), (2.0, 2, 1), (5.4, 2, 1), (5.4, 16, 2)],
)
def test_the_automatic_thread_count_drops_to_one_on_a_busy_machine(load_average, cpus, expected):
    from convnet.engine.threads import automatic_threads

    assert automatic_threads(load_average, cpus, default=2) == expected
