"""Training at serve start, bounded in time, shown with progress, and carried on across starts.

The server may have to train networks before the page opens: a partner trained like the
reference run (so the pair differs in architecture only), and with --augmentation-switch
each network trained the other way. A recipe of 15 epochs on 60,000 images with
augmentation can take many minutes on a laptop CPU, so every such training goes through one
`TrainingBudget`. The time of an epoch is measured — by training the first epoch of a new
run, or from the epochs a run already has — and only as many epochs as fit in what is left
of the budget are trained, through the one engine (`fit` with `stop_after_epoch`). A
training that does not finish stays resumable: the log and the page say so, the next start
of the server carries it on (`unfinished_runs` finds it), and `convnet train --resume
RUN_DIR` finishes it at once. The budget is thus passed by at most one epoch. Progress: the
engine's per-epoch lines and bar, each line prefixed by which training of how many it is,
and after the first epoch how many more will be trained now and how long they will take.
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
    """A training stopped when the rest would pass the budget."""

    run: Path
    epochs_done: int
    epochs: int
    predicted_seconds: float  # the rest of the training's, from its epochs so far
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
        self,
        config: TrainConfig,
        label: str,
        log: Callable[[str], None],
        resume: Path | None = None,
    ) -> tuple[Path, float] | Unfinished:
        """Train `config` (its `out` set), or carry on the unfinished run `resume`, for as
        many epochs as fit in the budget: (run directory, seconds) once it is finished, else
        where it stopped."""
        from convnet.engine.run import Run
        from convnet.engine.train import fit

        def say(line: str) -> None:
            log(f"[{label}] {line}")

        started = self.clock()
        if resume is None:
            result = fit(config, stop_after_epoch=1, log=say)
            run = Run(result["run_dir"])
            if "stopped_after_epoch" not in result:  # one epoch: already finished
                return run.path, self.clock() - started
            epoch_seconds = self.clock() - started
        else:
            run = Run(resume)
            history = run.history()
            epoch_seconds = sum(row["epoch_seconds"] for row in history) / max(len(history), 1)
        epochs, done = config.epochs, len(run.history())
        rest = epoch_seconds * (epochs - done)
        affordable = min(int(self.left() // max(epoch_seconds, 1e-9)), epochs - done)
        plan = (
            f"{done} of {epochs} epochs trained, about {epoch_seconds:.0f} s each: the other "
            f"{epochs - done} would take about {rest / 60:.1f} min, and "
            f"{self.left() / 60:.1f} min are left of --max-training-minutes"
        )
        if affordable < epochs - done:
            say(
                f"{plan}: training {affordable} more now; the server carries it on when it "
                f"starts again, or finish it with 'convnet train --resume {run.path}'."
            )
        else:
            finish = time.strftime("%H:%M", time.localtime(time.time() + rest))
            say(f"{plan}: finishing it now (about {finish}).")
        if affordable > 0:
            stop = None if affordable == epochs - done else done + affordable
            fit(None, resume=run.path, stop_after_epoch=stop, log=say)
        if run.finished:
            return run.path, self.clock() - started
        done = len(run.history())
        return Unfinished(run.path, done, epochs, epoch_seconds * (epochs - done), self.left())
