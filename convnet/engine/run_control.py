"""Stopping training on a signal after a whole step, so the checkpoint resumes exactly."""

from __future__ import annotations

import signal
import threading


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
