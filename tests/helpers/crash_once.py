"""`python -m tests.helpers.crash_once ARGUMENTS`: `convnet ARGUMENTS`, except that rank 1
dies (exit status 1, as a killed process would) right after the first step of its second
epoch, when rank 0 has written the checkpoint of the first; once only, as the file named by
$CRASH_ONCE records. torchrun started with --max-restarts then starts every process again,
as after a machine's failure, and the run must continue from that checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import convnet.engine.train as train
from convnet.cli import main

MARKER = Path(os.environ["CRASH_ONCE"])


def _dying(step):
    def optimizer_step(training, index: int) -> None:
        step(training, index)
        if index >= training.steps and not MARKER.exists():  # the first step of epoch 2
            MARKER.touch()
            os._exit(1)

    return optimizer_step


if os.environ.get("RANK") == "1":
    train._optimizer_step = _dying(train._optimizer_step)
raise SystemExit(main())
