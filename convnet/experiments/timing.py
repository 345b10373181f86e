"""Timing that means something on a shared machine: calls timed by the thread's own CPU
time in rounds whose medians give a spread, how much of the wall time the thread ran, and
the rule that withholds a verdict on times when the machine was busy or the rounds disagree
(claim 6; convnet/experiments/cost.py)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

ROUNDS = 3  # rounds of timed calls; their medians' spread says whether the times hold
# The rounds' medians must lie within 10% of their median (relative spread), and a layer
# type's share of the time within 5 points across rounds, for a verdict on times.
SPREAD_LIMIT = 0.10
SHARE_SPREAD_LIMIT = 0.05
# A thread that got less of the wall time than this shared its core with other programs.
QUIET_CPU_SHARE = 0.9


@dataclass
class TimingConditions:
    """How the times were taken and whether the machine let them mean something."""

    clock: str  # "thread CPU time" (one thread on the CPU) or "wall time"
    cores: int  # the CPUs this process may run on
    load_before: float | None  # one-minute load average before and after the timing
    load_after: float | None
    cpu_share: float | None  # the timing thread's CPU time ÷ wall time (None: wall clock)
    rounds: int = ROUNDS

    @property
    def load(self) -> float | None:
        loads = [value for value in (self.load_before, self.load_after) if value is not None]
        return max(loads) if loads else None

    @property
    def busy(self) -> bool:
        """Load average at least the cores, or the timing thread kept from its core."""
        loaded = self.load is not None and self.load >= self.cores
        starved = self.cpu_share is not None and self.cpu_share < QUIET_CPU_SHARE
        return loaded or starved

    def to_dict(self) -> dict:
        return {**asdict(self), "load": self.load, "busy": self.busy}


@dataclass
class Clock:
    """The clock the calls are timed with, and the CPU and wall time they took in all."""

    read: Callable[[], float]
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def measures_cpu(self) -> bool:
        return self.read is time.thread_time

    def cpu_share(self) -> float | None:
        if not self.measures_cpu or self.wall_seconds <= 0:
            return None
        return min(1.0, self.cpu_seconds / self.wall_seconds)


def round_medians(
    step: Callable[[], object], repeats: int, warmup: int, clock: Clock, rounds: int = ROUNDS
) -> list[float]:
    """The median seconds of one call in each of `rounds` rounds of `repeats` calls."""
    for _ in range(warmup):
        step()
    medians = []
    for _ in range(rounds):
        samples = []
        cpu_started, wall_started = time.thread_time(), time.perf_counter()
        for _ in range(repeats):
            started = clock.read()
            step()
            samples.append(clock.read() - started)
        clock.cpu_seconds += time.thread_time() - cpu_started
        clock.wall_seconds += time.perf_counter() - wall_started
        medians.append(statistics.median(samples))
    return medians


def relative_spread(values: list[float]) -> float:
    """(max − min) / median: 0.05 when rounds of 100 µs lie within 5 µs of each other."""
    middle = statistics.median(values)
    return (max(values) - min(values)) / middle if middle > 0 else 0.0


def unjudged_reason(
    conditions: TimingConditions | None, spread: float, limit: float, unit: str = "relative"
) -> dict | None:
    """Why times cannot be judged: the machine was busy, or the rounds disagree (their
    spread above `limit`, `unit` "relative" for times, "points" for shares); None when
    they can."""
    if conditions is not None and conditions.busy:
        return {
            "reason": "busy",
            "load": conditions.load,
            "cores": conditions.cores,
            "cpu_share": conditions.cpu_share,
        }
    if spread > limit:
        return {"reason": "spread", "spread": round(spread, 4), "limit": limit, "unit": unit}
    return None


def unjudged_text(reason: dict) -> str:
    """The reason in words (English; the lecture report has its own, in its language)."""
    if reason["reason"] == "busy":
        load = "unknown" if reason["load"] is None else f"{reason['load']:.1f}"
        ran = (
            f"; the timing thread ran {reason['cpu_share']:.0%} of the time"
            if reason.get("cpu_share") is not None
            else ""
        )
        return f"not judged: the machine was busy (load {load} on {reason['cores']} cores{ran})"
    if reason["unit"] == "points":
        spread, limit = f"{100 * reason['spread']:.0f} points", f"{100 * reason['limit']:.0f}"
    else:
        spread, limit = f"{reason['spread']:.0%}", f"{reason['limit']:.0%}"
    return f"not judged: the rounds disagree (spread {spread}, above the {limit} a verdict needs)"
