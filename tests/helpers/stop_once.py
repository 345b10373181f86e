"""`python -m tests.helpers.stop_once ARGUMENTS`: `convnet ARGUMENTS` with the steps' counts
read every 5 steps, except that rank 1 alone is asked to stop (SIGTERM to itself, as a
scheduler's notice reaching one machine) right after its step 2: every rank must stop after
the same step, the next logging point's (step 5), with one checkpoint."""

from __future__ import annotations

import os
import signal

import convnet.engine.train as train
from convnet.cli import main

train.LOG_INTERVAL = 5


def _asking(step):
    def optimizer_step(training, index: int) -> None:
        step(training, index)
        if index == 1:  # the second step
            os.kill(os.getpid(), signal.SIGTERM)

    return optimizer_step


if os.environ.get("RANK") == "1":
    train._optimizer_step = _asking(train._optimizer_step)
raise SystemExit(main())
