"""TensorBoard event files of a run (`--tensorboard`), as Lightning's TensorBoardLogger writes
them: per-step training loss, learning rate and images/s, the same numbers as steps.csv, and
per-epoch training and held-out metrics (metrics.csv), all against the optimizer step.

Written with `torch.utils.tensorboard.SummaryWriter`, which needs the `tensorboard` package
(an optional extra: pip install 'convnet[tensorboard]'). Events are written when steps.csv is
(at each checkpoint); a resumed run purges the events past its checkpoint's step, so no step
appears twice, as in steps.csv.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from convnet.errors import UserError

FOLDER = "tensorboard"  # inside the run directory
# steps.csv column -> scalar tag
STEP_TAGS = {"loss": "train/loss", "lr": "train/lr", "images_per_second": "train/images_per_second"}
# metrics.csv column -> scalar tag
EPOCH_TAGS = {
    "train_loss": "epoch/train_loss",
    "train_error": "epoch/train_error",
    "eval_loss": "epoch/eval_loss",
    "eval_error": "epoch/eval_error",
    "eval_top5_error": "epoch/eval_top5_error",
}


def check_available() -> None:
    """UserError, with the command that installs it, when `tensorboard` is missing."""
    try:
        found = importlib.util.find_spec("tensorboard") is not None
    except (ImportError, ValueError):  # a module set to None, or one without a spec
        found = False
    if not found:
        raise UserError(
            "--tensorboard writes TensorBoard event files, which needs the tensorboard "
            "package, not installed here. Install it with: pip install tensorboard (or pip "
            "install 'convnet[tensorboard]'), or train without --tensorboard (steps.csv and "
            "metrics.csv hold the same numbers)."
        )


class TensorBoardLog:
    """The event files of one run, in RUN/tensorboard."""

    def __init__(self, run_path: Path, resume_step: int | None = None) -> None:
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: events of the steps a resumed run redoes are dropped on reading
        self.writer = SummaryWriter(
            str(Path(run_path) / FOLDER),
            purge_step=resume_step + 1 if resume_step is not None else None,
        )

    def steps(self, rows: list[tuple]) -> None:
        """Rows of steps.csv (step, epoch, loss, lr, images_per_second), then flushed."""
        for step, _epoch, *values in rows:
            for tag, value in zip(STEP_TAGS.values(), values, strict=True):
                self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def epoch(self, row: dict, step: int) -> None:
        """One row of metrics.csv, at the step that ended its epoch."""
        for column, tag in EPOCH_TAGS.items():
            if row.get(column) is not None:
                self.writer.add_scalar(tag, row[column], step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
