"""A training step's counts (loss, valid and correct images), kept on the device between
logging points: reading them makes the host wait for the device, so that on a GPU the next
batches could not be queued while it works. engine/train.py reads them every LOG_INTERVAL
steps, at a checkpoint, at the end of an epoch and when one process is asked to stop."""

from __future__ import annotations

import math

import torch

from convnet.engine import distributed
from convnet.engine.prepare import Training
from convnet.errors import UserError


def stopped_error(t: Training, reason: str) -> UserError:
    """Training stopped for `reason` (a loss that is not a number), with the checkpoint kept."""
    kept = (
        f"The last good checkpoint is kept in {t.run.checkpoint_path}"
        if t.run.checkpoint_path.is_file()
        else "No checkpoint had been written yet"
    )
    return UserError(f"Training stopped: {reason}. {kept}; try a smaller --lr.")


class Pending:
    """The steps since the last logging point: their counts, still on the device, their
    learning rates and their seconds (the host's: on a GPU the device's work is queued, so a
    step's own seconds mean something over an interval, not alone)."""

    def __init__(self, now: float) -> None:
        self.last_end, self.steps, self.counts, self.values = now, [], [], []

    def add(self, step: int, rate: float, counts: torch.Tensor) -> None:
        self.steps.append([step, rate, 0.0])
        self.counts.append(counts)

    def ended(self, now: float) -> None:
        self.steps[-1][2], self.last_end = now - self.last_end, now

    def read(self, t: Training, epoch: int, stop_asked: bool) -> bool:
        """Bring the counts to the host, summed over all ranks with whether any was asked to
        stop: one collective, one transfer, before the step's optimizer step. A loss that is
        not a number stops the run, naming its step (the weights of later steps are lost:
        the checkpoint kept is older than all of them)."""
        counts = torch.stack(self.counts)
        if distributed.current().distributed:
            flag = torch.tensor([float(stop_asked)], device=counts.device)
            summed = distributed.all_reduce_sum(torch.cat([counts.flatten(), flag])).tolist()
            self.values = [summed[i : i + 3] for i in range(0, len(summed) - 1, 3)]
            stop_asked = summed[-1] > 0
        else:
            self.values = counts.tolist()
        for (step, _, _), (loss_total, _, _) in zip(self.steps, self.values, strict=True):
            if not math.isfinite(loss_total):  # every rank sees the same sums: all stop
                if not distributed.current().is_main:
                    raise distributed.PeerFailure(0)
                last = self.steps[-1][0]
                found = "" if step == last else f" (read at step {last})"
                raise stopped_error(
                    t, f"loss became {loss_total} at epoch {epoch + 1}, step {step}{found}"
                )
        return stop_asked

    def logged(self, t: Training, epoch: int, sums: dict) -> dict:
        """Add the steps read to `sums` and their rows to steps.csv's; start a new interval."""
        for (step, rate, seconds), (loss_total, valid, correct) in zip(
            self.steps, self.values, strict=True
        ):
            sums = {
                "loss": sums["loss"] + loss_total,
                "seen": sums["seen"] + int(valid),
                "correct": sums["correct"] + int(correct),
            }
            speed = round(valid / max(seconds, 1e-9), 1)
            t.step_rows.append((step + 1, epoch + 1, loss_total / max(valid, 1), rate, speed))
        self.steps, self.counts, self.values = [], [], []
        return sums
