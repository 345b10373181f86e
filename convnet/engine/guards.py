"""What stops a run cleanly rather than with a traceback: an input the model cannot take,
a batch too large for memory, training images that cannot be decoded, and a write the
machine refuses — each a UserError that says what to do; and the warning a run ends with
when its model did not learn."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from convnet.data.sources import DataSource
from convnet.engine.run import Run
from convnet.errors import UserError
from convnet.files import WriteFailed
from convnet.wording import counted

# A run whose training loss fell by less than this share has not learned: a 16-step lenet5
# run went 2.310 → 2.293 and stayed at 82% test error (the mean loss of the first and the
# last tenth of the steps are compared).
MIN_LOSS_DROP = 0.05


def check_input(
    model: nn.Module, name: str, input_size: tuple[int, int, int], flag: str = "--image-size"
) -> None:
    """One image through the model: an input size it cannot take is the user's to fix, by
    `flag` (training's --image-size, evaluation's --crop). The model keeps its mode."""
    was_training = model.training
    device = next((parameter.device for parameter in model.parameters()), torch.device("cpu"))
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_size, device=device))
    except RuntimeError as error:
        raise UserError(
            f"{name} cannot take {'×'.join(map(str, input_size))} input "
            f"({str(error).strip().splitlines()[0]}); choose another {flag}."
        ) from None
    finally:
        model.train(was_training)


@contextlib.contextmanager
def resumable_after_write_failure(run: Run) -> Iterator[None]:
    """A write the machine refuses (full disk, read-only, …) ends the run with what to do:
    the atomic writes left the last checkpoint whole, so the run resumes once it is fixed."""
    try:
        yield
    except WriteFailed as error:
        if run.checkpoint_path.is_file():
            kept = (
                f"The last checkpoint, {run.checkpoint_path}, is whole: once that is "
                f"fixed, continue with 'convnet train --resume {run.path}'."
            )
        else:
            kept = "No checkpoint had been written yet: start the run again once that is fixed."
        raise UserError(f"Training stopped. {error} {kept}") from None


def out_of_memory(error: BaseException, batch_size: int, device: torch.device) -> UserError:
    """The message for a batch too large for the memory of the CPU or the GPU."""
    where = "the GPU's" if device.type == "cuda" else "the machine's"
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(
        f"Training stopped: a batch of {batch_size} images does not fit in {where} memory "
        f"({reason}). Start the run again with a smaller batch, e.g. --batch-size "
        f"{max(1, batch_size // 2)} (and a learning rate scaled down alike)."
    )


def check_training_files(
    source: DataSource, strict: bool, say: Callable[[str], None], reported: int = 0
) -> int:
    """Training images that could not be decoded so far (left out of their batches, label
    -1): with --strict an error, else listed once more when there are new ones. Returns how
    many have been listed."""
    failed = sorted(source.failed_training)
    if len(failed) <= reported:
        return reported
    listed = ", ".join(f"{path} ({why})" for path, why in map(source.training_failure, failed[:10]))
    more = f" and {len(failed) - 10} more" if len(failed) > 10 else ""
    if strict:
        raise UserError(
            f"--strict: {counted(len(failed), 'training image')} of {source.name} cannot "
            f"be used: {listed}{more}. Remove or replace them, or run without --strict."
        )
    say(f"Skipped {counted(len(failed), 'training image')} that cannot be used: {listed}{more}.")
    return len(failed)


def learning_warning(steps: list[dict], num_classes: int) -> str | None:
    """A warning, with what to change, when the training loss barely moved or rose over the
    run's steps (rows of steps.csv); None when it fell or is already low (fine-tuning)."""
    tenth = max(1, len(steps) // 10)
    if len(steps) < 2:
        return None
    first = sum(row["loss"] for row in steps[:tenth]) / tenth
    last = sum(row["loss"] for row in steps[-tenth:]) / tenth
    # below a tenth of the loss of a uniform guess, ln(classes), the model already fits
    if not math.isfinite(first + last) or last < 0.1 * math.log(max(num_classes, 2)):
        return None
    if first - last >= MIN_LOSS_DROP * first:
        return None
    if last - first >= MIN_LOSS_DROP * first:  # diverging: the step is too large
        return (
            f"Warning: the training loss rose ({first:.3f} → {last:.3f} over {len(steps)} "
            "steps), so this model has not learned and its errors say little. The learning "
            "rate is likely too high for it: try a lower --lr, a longer warm-up "
            "(--lr-warmup-epochs) or --clip-grad-norm."
        )
    return (
        f"Warning: the training loss barely moved ({first:.3f} → {last:.3f} over "
        f"{len(steps)} steps), so this model has not learned yet and its errors say "
        "little. Train for more steps: more --epochs, more of the training images (a "
        "larger --train-subset, or none) or a smaller --batch-size (an epoch takes images / "
        "batch size steps); a higher --lr can also help."
    )
