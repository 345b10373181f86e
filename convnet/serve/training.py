"""Training at serve start, bounded in time and shown with progress.

The server may have to train networks before the page opens: a partner trained like the
reference run (so the pair differs in architecture only), and with --augmentation-switch
each network trained the other way. A recipe of 15 epochs on 60,000 images can take
minutes on a laptop CPU, so every such training goes through one `TrainingBudget`: the
first epoch is trained and timed (through the one engine, `fit` with `stop_after_epoch`),
the time of the rest is predicted from it, and the training goes on only when the
prediction fits in what is left of the budget. Otherwise it stops there, resumable: the
log and the page say how to finish it (`convnet train --resume RUN_DIR`), and the next
start of the server finds it finished. The budget is thus passed by at most one epoch.
Progress: the engine's per-epoch lines and bar, each line prefixed by which training of
how many it is, and after the first epoch the predicted time of the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the models: not at the command line's start
    from convnet.engine.config import TrainConfig

DEFAULT_BUDGET_MINUTES = 10.0


@dataclass(frozen=True)
class Unfinished:
    """A training stopped after its first epoch because the rest would pass the budget."""

    run: Path
    epochs_done: int
    epochs: int
    predicted_seconds: float  # the whole training's, predicted from its first epoch
    left_seconds: float  # what was left of the budget when it stopped

    def resume_command(self) -> str:
        return f"convnet train --resume {self.run}"


class TrainingBudget:
    """Seconds that the trainings at serve start may take together (`clock`: for tests)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.clock, self.started = seconds, clock, clock()

    def left(self) -> float:
        return max(0.0, self.seconds - (self.clock() - self.started))

    def train(
        self, config: TrainConfig, label: str, log: Callable[[str], None]
    ) -> tuple[Path, float] | Unfinished:
        """Train `config` (its `out` set) if its first epoch shows that the rest fits in the
        budget: (run directory, seconds); else stop after that epoch and say so."""

        from convnet.engine.train import fit

        def say(line: str) -> None:
            log(f"[{label}] {line}")

        started = self.clock()
        result = fit(config, stop_after_epoch=1, log=say)
        run = Path(result["run_dir"])
        epochs = result["epochs"]
        if "stopped_after_epoch" not in result:  # one epoch: already finished
            return run, self.clock() - started
        first = self.clock() - started
        rest = first * (epochs - 1)
        if rest > self.left():
            unfinished = Unfinished(run, 1, epochs, first * epochs, self.left())
            say(
                f"epoch 1 of {epochs} took {first:.0f} s, so the other {epochs - 1} would take "
                f"about {rest / 60:.1f} min, more than the {unfinished.left_seconds / 60:.1f} "
                f"min left of --max-training-minutes. Stopped; finish it with "
                f"'{unfinished.resume_command()}' and start the server again."
            )
            return unfinished
        say(
            f"epoch 1 of {epochs} took {first:.0f} s; the other {epochs - 1} will take about "
            f"{rest / 60:.1f} min (done about {time.strftime('%H:%M', time.localtime(time.time() + rest))})."
        )
        fit(None, resume=run, log=say)
        return run, self.clock() - started
