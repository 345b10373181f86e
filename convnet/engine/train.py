"""Training: the one loop, `fit`, for every data source, as one process or many (torchrun).

    convnet train lenet5                                                 # MNIST in memory
    convnet train resnet18 --data DIR                                    # image folders
    torchrun --standalone --nproc_per_node 2 -m convnet train lenet5     # either, on 2 processes

`fit` is the one way into training: the command line, `convnet.fit`, the server's fresh runs
and the experiments all call it. It reads top to bottom: `prepare` resolves the
configuration once and builds what training needs (a `Training`); each epoch is
`train_one_epoch`, then `end_epoch` scores the held-out images with the shared `evaluate`
and commits the epoch (weights, metrics.csv, checkpoint); `results` (convnet.engine.results) is what the run returns.
The recipe — optimizer, learning-rate schedule, loss, the batch of a short run — is
`convnet.engine.recipe`; the defaults of each data source and model, `convnet.engine.config`.

Every random draw is a function of (seed, epoch, image index) or (seed, step, rank), and a
checkpoint is a whole step, so a run resumed from any checkpoint ends with the weights of
the uninterrupted run. With W processes of batch B each, step s covers the images of step s
of a one-process run with batch W·B, and DistributedDataParallel averages the gradients as
that run's mean loss does: the two end with the same weights, up to floating-point
summation order, for models without batch normalization (whose statistics are per process)
or dropout (whose masks are).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.profiler import record_function
from tqdm import tqdm

from convnet.data.sources import Batch, DataSource, mix
from convnet.engine import distributed, run_lock
from convnet.engine.checkpoint import save_checkpoint, save_weights
from convnet.engine.config import TrainConfig
from convnet.engine.device import autocast, is_out_of_memory
from convnet.engine.evaluate import Evaluation, evaluate
from convnet.engine.guards import (
    check_training_files,
    out_of_memory,
    resumable_after_write_failure,
)
from convnet.engine.preparations import trained_preparation
from convnet.engine.prepare import Log, Training, prepare, silent
from convnet.engine.recipe import loss_sum, set_learning_rate
from convnet.engine.results import best_epoch, results
from convnet.engine.run_control import StopRequests
from convnet.engine.step_counts import Pending, stopped_error
from convnet.engine.weight_files import read_state_file
from convnet.errors import UserError
from convnet.wording import counted


def fit(
    config: TrainConfig | None,
    resume: Path | None = None,
    *,
    changes: dict | None = None,
    stop_after_epoch: int | None = None,
    module: nn.Module | None = None,
    data: DataSource | None = None,
    log: Log = print,
    restart: bool = False,
) -> dict:
    """Train, evaluating on the held-out split after every epoch; return the results (the
    JSON of `convnet train`; under torchrun rank 0's, the other ranks an empty dict).

    `config` need not be resolved: its defaults are filled in here, once. With `resume`, the
    run continues from its checkpoint with its saved configuration (`config` may be None);
    `restart` (torchrun starting its processes again after one failed) continues `resume`
    from its checkpoint where it has one, else starts `config` there afresh. `changes` may
    set what engine.resume.RESUMABLE_CHANGES lists (more epochs re-plan the schedule).
    `stop_after_epoch` ends the run early, resumably. `module` trains a user's own nn.Module
    (the Python API) described by `config.custom_module`; the run directory holds its
    weights but not its code; `data` (a DataSource of the user's own Dataset, described by
    `config.custom_data`) trains instead of a registered data set or folder. Joins the
    process group torchrun describes (or none) unless the caller has
    (`distributed.session`). UserError for anything the user can fix."""
    if not distributed.started():
        device = (changes or {}).get("device") or (config.device if config else "auto")
        with distributed.session(device, config.backend if config else "auto"):
            return fit(
                config,
                resume,
                changes=changes,
                stop_after_epoch=stop_after_epoch,
                module=module,
                data=data,
                log=log,
                restart=restart,
            )
    say = log if distributed.current().is_main else silent
    with run_lock.released_at_exit():  # rank 0 locks the run directory in `prepare`
        training = prepare(config, resume, changes or {}, module, say, data, restart)
        try:
            return _train(training, stop_after_epoch, say, log)
        finally:
            training.source.close()  # its workers, kept across the epochs


def _train(training: Training, stop_after_epoch: int | None, say: Log, log: Log) -> dict:
    """The epochs `fit` prepared, then the run's results."""
    session = distributed.current()
    epochs, run = training.config.epochs, training.run
    stop = StopRequests()
    if stop_after_epoch is not None and stop_after_epoch >= epochs:  # the flag does nothing
        say(
            f"--stop-after-epoch {stop_after_epoch}: the run ends after {counted(epochs, 'epoch')}."
        )
    # Ctrl-C or SIGTERM (a scheduler's notice) any time from here on, also during an
    # evaluation or a write, stops the run after a whole step with a checkpoint.
    with stop, contextlib.closing(training.board) if training.board else contextlib.nullcontext():
        for epoch in range(training.state.epoch, epochs):
            if _patience_spent(training, say):
                break
            sums, seconds, images = train_one_epoch(training, epoch, stop, say)
            end_epoch(training, epoch, sums, seconds, images, say)
            # Asked to stop during the evaluation or the writes: the epoch's checkpoint is
            # whole, so stop here (under torchrun the ranks agree at the next logging point).
            if stop.requested and not session.distributed and epoch + 1 < epochs:
                say(
                    f"Interrupted: checkpoint saved at the end of epoch {epoch + 1}. Continue "
                    f"with: convnet train --resume {run.path}"
                )
                raise KeyboardInterrupt
            if stop_after_epoch is not None and stop_after_epoch <= epoch + 1 < epochs:
                say(
                    f"Stopped after epoch {epoch + 1} as asked; continue with: "
                    f"convnet train --resume {run.path}"
                )
                stopped = {"run_dir": str(run.path), "stopped_after_epoch": epoch + 1}
                return {**stopped, "epochs": epochs} if session.is_main else {}
    return results(training, training.kept or _evaluate_kept(training), log)


def train_one_epoch(
    t: Training, epoch: int, stop: StopRequests, say: Log
) -> tuple[dict, float, int]:
    """One pass over the training images, from the step a resumed run stopped at. Returns
    the epoch's sums (loss, correct, seen), its seconds and the images this process trained.
    Each optimizer step takes --grad-accum-steps batches. The steps' counts stay on the
    device until a logging point (`Pending`, convnet/engine/step_counts.py); Ctrl-C or SIGTERM stops after the step it
    came in (under torchrun: every rank after the same step, the next logging point's)."""
    config, state, session, device = t.config, t.state, distributed.current(), t.device
    started = time.perf_counter()
    sums = dict(state.totals or {"loss": 0.0, "correct": 0, "seen": 0})
    seen_before = sums["seen"]  # images of this epoch trained before a resume
    t.trained.train()
    for norm in t.frozen_norms():
        norm.eval()
    progress = tqdm(
        total=t.steps,
        initial=state.batch,
        disable=not session.is_main,
        unit="batch",
        desc=f"epoch {epoch + 1}/{config.epochs}",
        leave=False,
        mininterval=0.5,
    )
    accumulate = config.grad_accum_steps
    batches = t.source.train_batches(
        epoch,
        config.batch_size,
        config.seed,
        session.rank,
        session.world_size,
        state.batch * accumulate,
    )
    pending = Pending(time.perf_counter())
    with progress:  # the bar is cleared however the epoch ends
        for batch_index, group in enumerate(_groups(batches, accumulate), start=state.batch):
            step = epoch * t.steps + batch_index
            _seed_global_draws(mix(config.seed, step, session.rank), device)
            rate = t.schedule(step)
            set_learning_rate(t.optimizer, rate)
            pending.add(step, rate, _gradients(t, group, step, say))
            every, done = config.checkpoint_every, batch_index + 1
            at_checkpoint = bool(every) and done % every == 0 and done < t.steps
            # one process stops at once when asked; under torchrun the ranks learn of it at
            # the logging points, which are the same steps on every rank
            logging = (
                at_checkpoint
                or done == t.steps
                or done % LOG_INTERVAL == 0
                or (stop.requested and not session.distributed)
            )
            stop_asked = logging and pending.read(t, epoch, stop.requested)
            _optimizer_step(t, step)
            pending.ended(time.perf_counter())
            progress.update()
            state.batch = done
            if not logging:
                continue
            sums = pending.logged(t, epoch, sums)
            progress.set_postfix(
                loss=f"{sums['loss'] / max(sums['seen'], 1):.4f}",
                acc=f"{sums['correct'] / max(sums['seen'], 1):.4f}",
                refresh=False,
            )
            state.totals = sums
            seconds = state.train_seconds + time.perf_counter() - started
            if stop_asked:  # Ctrl-C or SIGTERM on some rank: all stop after this whole step
                checkpoint(t, seconds)
                progress.close()  # before the message below
                say(
                    f"Interrupted: checkpoint saved at epoch {epoch + 1}, batch {state.batch}. "
                    f"Continue with: convnet train --resume {t.run.path}"
                )
                raise KeyboardInterrupt
            if at_checkpoint:
                checkpoint(t, seconds)
    return sums, time.perf_counter() - started, sums["seen"] - seen_before


def end_epoch(t: Training, epoch: int, sums: dict, seconds: float, images: int, say: Log) -> None:
    """Score the held-out images (and the moving average's), add the epoch's row to the
    history and commit the epoch: the kept weights (the last, or with --patience the best
    epoch's) and metrics.csv, then the checkpoint, which a crash before it redoes."""
    config, state, run = t.config, t.state, t.run
    state.train_seconds += seconds
    t.reported = distributed.together(
        check_training_files, t.source, config.strict, say, t.reported
    )
    distributed.average_buffers(t.model)  # one set of batch-norm statistics for all ranks
    evaluation = evaluate(t.model, t.source, t.device, t.precision, keep_logits=False)
    scores = evaluation.result
    state.history.append(
        {
            "epoch": epoch + 1,
            "train_loss": round(sums["loss"] / max(sums["seen"], 1), 6),
            "train_error": round(1 - sums["correct"] / max(sums["seen"], 1), 6),
            "eval_loss": scores["loss"],
            "eval_error": scores["top1_error"],
            "eval_top5_error": scores["top5_error"],
            "lr": round(t.optimizer.param_groups[0]["lr"], 8),
            "epoch_seconds": round(seconds, 3),
            "images_per_second": round(images / seconds, 1),
        }
    )
    kept = evaluation
    if t.ema is not None:
        kept = evaluate(t.ema.module, t.source, t.device, t.precision, keep_logits=False)
        state.history[-1].update(
            ema_eval_loss=kept.result["loss"],
            ema_eval_error=kept.result["top1_error"],
            ema_eval_top5_error=kept.result["top5_error"],
        )
    state.epoch, state.batch, state.totals = epoch + 1, 0, None
    improved = config.patience is None or best_epoch(t) == state.epoch
    if improved:
        t.kept = kept
    if t.board is not None:
        t.board.epoch(state.history[-1], state.epoch * t.steps)
    if distributed.is_main():
        metadata = {
            "model": config.model,
            "dataset": config.source_name,
            "num_classes": str(len(config.classes)),
            "class_names": json.dumps(list(config.classes)),  # for the file read on its own
        }
        # how its image files are prepared, for the file read without its run (a Dataset of
        # the user's own says nothing of it)
        preparation = trained_preparation(config.data, config.dataset, config.custom_data)
        if preparation is not None:
            metadata["preparation"] = preparation
        with resumable_after_write_failure(run):
            if improved:
                save_weights(run.weights_path, t.kept_model, metadata)
            run.write_history(state.history)
    checkpoint(t)
    row = state.history[-1]
    ema = f", moving average {kept.result['top1_error']:.2%}" if t.ema is not None else ""
    say(
        f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, "
        f"{t.source.eval_split} error {scores['top1_error']:.2%} (top-5 "
        f"{scores['top5_error']:.2%}){ema}, {row['images_per_second']:,.0f} images/s"
    )


def checkpoint(t: Training, seconds: float | None = None) -> None:
    """On rank 0, write the steps since the last checkpoint, then a checkpoint of `t.state`
    (`seconds`: the training time so far, mid-epoch). Never saves weights that are no longer
    numbers (a finite loss can precede them)."""
    if not distributed.is_main():
        return
    run, state = t.run, t.state
    with resumable_after_write_failure(run):  # the steps up to this checkpoint first
        run.append_steps(t.step_rows)
    if t.board is not None:
        t.board.steps(t.step_rows)
    t.step_rows.clear()
    if not all(bool(torch.isfinite(p.detach()).all()) for p in t.model.parameters()):
        shown = state.epoch if state.batch == 0 else state.epoch + 1  # 0: the epoch before's end
        raise stopped_error(
            t, f"the weights became non-finite at epoch {shown}, batch {state.batch or t.steps}"
        )
    kept = replace(state, grad_scaler=t.scaler.state_dict(), threads=torch.get_num_threads())
    if seconds is not None:
        kept.train_seconds = seconds
    with resumable_after_write_failure(run):
        save_checkpoint(run.checkpoint_path, t.model, t.optimizer, kept, t.ema)


# --- the kept weights ---------------------------------------------------------------------


def _patience_spent(t: Training, say: Log) -> bool:
    """--patience N: whether N epochs have passed since the best one (said once)."""
    patience, history = t.config.patience, t.state.history
    if patience is None or not history or len(history) - best_epoch(t) < patience:
        return False
    say(
        f"Stopped early after epoch {len(history)}: {counted(patience, 'epoch')} without a lower "
        f"{t.source.eval_split} error; the run keeps epoch {best_epoch(t)}'s weights."
    )
    return True


def _evaluate_kept(t: Training) -> Evaluation:
    """The evaluation of the weights the run keeps, where this process has not scored them
    (a resumed run whose kept epoch came before): rank 0 reads model.safetensors, every
    rank scores it."""
    model = copy.deepcopy(t.kept_model)
    state = None
    if distributed.is_main():
        state, _ = read_state_file(t.run.weights_path)
    model.load_state_dict(distributed.broadcast_object(state))
    return evaluate(model, t.source, t.device, t.precision, keep_logits=False)


# --- one step -----------------------------------------------------------------------------


def _groups(batches, size: int):
    """The batches in lists of `size` (the last may be shorter): one optimizer step each."""
    group = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _gradients(t: Training, group: list[Batch], step: int, say: Log) -> torch.Tensor:
    """`_forward_backward`; where the compiled step (--compile yes) fails, whatever the
    compiler raised, the step again uncompiled (its draws seeded again), and the run goes on
    uncompiled, with a note."""
    try:
        return _forward_backward(t, group)
    except Exception as error:
        if t.compiled is None or isinstance(error, UserError):
            raise
        t.compiled = None
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        say(
            f"Note: compiling the training step failed ({type(error).__name__}: {first}); "
            "training goes on without compiling (--compile no skips the attempt)."
        )
        _seed_global_draws(mix(t.config.seed, step, distributed.current().rank), t.device)
        return _forward_backward(t, group)


def _forward_backward(t: Training, group: list[Batch]) -> torch.Tensor:
    """Gradients of one optimizer step's batches (mixed where --mixup-alpha or --cutmix-alpha
    say so), their loss divided by all their images, so that K accumulated batches of B give
    the gradients of one batch of K·B. Returns the summed loss, valid and correct images, on
    the device (nothing here waits for it). A batch too large for memory is the user's to
    shrink (UserError)."""
    total = sum(len(batch.labels) for batch in group)
    rows = []
    t.optimizer.zero_grad(set_to_none=True)
    for index, (images, labels, erase) in enumerate(group):
        valid = labels >= 0  # on the host: an undecodable image (-1) has no class to mix
        # The named phases show up in a profile (benchmarks/profile_epoch.py).
        with record_function("data"):
            images = t.source.device_normalize(images, t.device, erase)
            images = images.contiguous(memory_format=t.layout)
            labels = labels.to(t.device, non_blocking=True)
        targets = labels
        if t.mixing is not None:
            if not valid.all():
                valid = valid.to(t.device, non_blocking=True)
                images, labels = images[valid], labels[valid]
            images, targets = t.mixing(images, labels)
        last = index == len(group) - 1
        # DDP averages the gradients at the last batch's backward only
        alone = not distributed.current().distributed
        syncing = contextlib.nullcontext() if last or alone else t.trained.no_sync()
        try:
            with syncing:
                with record_function("forward"):
                    with autocast(t.device, t.precision):
                        forward = t.trained if t.compiled is None else t.compiled
                        logits = forward(images)
                    loss = loss_sum(logits, targets, t.config.label_smoothing)
                with record_function("backward"):
                    t.scaler.scale(loss / total).backward()
        except (RuntimeError, MemoryError) as error:
            if not is_out_of_memory(error):
                raise
            raise out_of_memory(error, t.config.batch_size, t.device) from None
        rows.append(
            torch.stack(
                [
                    loss.detach().float(),
                    (labels >= 0).sum().float(),
                    (logits.argmax(1) == labels).sum().float(),
                ]
            )
        )
    return rows[0] if len(rows) == 1 else torch.stack(rows).sum(0)


# Steps between two reads of the steps' counts (loss, valid and correct images) from the
# device, the logging interval: reading them makes the host wait for the device to finish,
# so that on a GPU the next batches could not be queued while it works. They are also read
# at a checkpoint, at the end of an epoch and when one process is asked to stop. steps.csv
# gets the same rows whatever the interval (tests/engine/test_step_logging.py).
LOG_INTERVAL = 50


def _optimizer_step(t: Training, step: int) -> None:
    """Clip the gradients' norm (--clip-grad-norm), step, and update the moving average
    every --model-ema-steps steps."""
    with record_function("optimizer"):
        if t.config.clip_grad_norm is not None:
            t.scaler.unscale_(t.optimizer)  # fp16: clip the true gradients
            torch.nn.utils.clip_grad_norm_(
                [p for p in t.model.parameters() if p.requires_grad], t.config.clip_grad_norm
            )
        t.scaler.step(t.optimizer)  # unscales first; skips a step that overflowed
        t.scaler.update()
        if t.ema is not None and (step + 1) % t.config.model_ema_steps == 0:
            t.ema.update_parameters(t.model)


def _seed_global_draws(seed: int, device: torch.device) -> None:
    """Seed the generators dropout draws from: the CPU's, and the GPU's when training there
    (torch.manual_seed visits every device: 0.15–0.25 ms, 2–3% of a LeNet-5 step)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
