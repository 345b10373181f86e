"""Training: the one loop, `fit`, for every data source, as one process or many (torchrun).

    convnet train lenet5                                                 # MNIST in memory
    convnet train resnet18 --data DIR                                    # image folders
    torchrun --standalone --nproc_per_node 2 -m convnet train lenet5     # either, on 2 processes

`fit` is the one way into training: the command line, `convnet.fit`, the server's fresh runs
and the experiments all call it. It reads top to bottom: `prepare` resolves the
configuration once and builds what training needs (a `Training`); each epoch is
`train_one_epoch`, then `end_epoch` scores the held-out images with the shared `evaluate`
and commits the epoch (weights, metrics.csv, checkpoint); `results` is what the run returns.
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
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn
from torch.profiler import record_function
from tqdm import tqdm

from convnet.data.sources import mix
from convnet.engine import distributed, run_lock
from convnet.engine.checkpoint import save_checkpoint, save_weights
from convnet.engine.config import TrainConfig
from convnet.engine.device import autocast, is_out_of_memory
from convnet.engine.evaluate import Evaluation, evaluate
from convnet.engine.guards import (
    check_training_files,
    learning_warning,
    out_of_memory,
    resumable_after_write_failure,
)
from convnet.engine.preparations import trained_preparation
from convnet.engine.prepare import Log, Training, prepare, silent
from convnet.engine.recipe import learning_rate, loss_sum, set_learning_rate
from convnet.engine.run_control import StopRequests
from convnet.errors import UserError
from convnet.files import atomic_write_json


def fit(
    config: TrainConfig | None,
    resume: Path | None = None,
    *,
    changes: dict | None = None,
    stop_after_epoch: int | None = None,
    module: nn.Module | None = None,
    log: Log = print,
) -> dict:
    """Train, evaluating on the held-out split after every epoch; return the results (the
    JSON of `convnet train`; under torchrun rank 0's, the other ranks an empty dict).

    `config` need not be resolved: its defaults are filled in here, once. With `resume`, the
    run continues from its checkpoint with its saved configuration (`config` may be None);
    `changes` may set what engine.resume.RESUMABLE_CHANGES lists (more epochs re-plan the
    schedule). `stop_after_epoch` ends the run early, resumably. `module` trains a user's own
    nn.Module (the Python API) described by `config.custom_module`; the run directory holds
    its weights but not its code. Joins the process group torchrun describes (or none) unless
    the caller has (`distributed.session`). UserError for anything the user can fix."""
    if not distributed.started():
        device = (changes or {}).get("device") or (config.device if config else "auto")
        with distributed.session(device, config.backend if config else "auto"):
            return fit(
                config,
                resume,
                changes=changes,
                stop_after_epoch=stop_after_epoch,
                module=module,
                log=log,
            )
    say = log if distributed.current().is_main else silent
    with run_lock.released_at_exit():  # rank 0 locks the run directory in `prepare`
        training = prepare(config, resume, changes or {}, module, say)
        return _train(training, stop_after_epoch, say, log)


def _train(training: Training, stop_after_epoch: int | None, say: Log, log: Log) -> dict:
    """The epochs `fit` prepared, then the run's results."""
    session = distributed.current()
    epochs, run, evaluation = training.config.epochs, training.run, None
    stop = StopRequests()
    # Ctrl-C or SIGTERM (a scheduler's notice) any time from here on, also during an
    # evaluation or a write, stops the run after a whole step with a checkpoint.
    with stop, contextlib.closing(training.board) if training.board else contextlib.nullcontext():
        for epoch in range(training.state.epoch, epochs):
            sums, seconds, images = train_one_epoch(training, epoch, stop, say)
            evaluation = end_epoch(training, epoch, sums, seconds, images, say)
            # Asked to stop during the evaluation or the writes: the epoch's checkpoint is
            # whole, so stop here (under torchrun the ranks agree at the next step instead).
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
    if evaluation is None:  # resumed a run that had already finished: score what it left
        evaluation = evaluate(
            training.model,
            training.source,
            training.device,
            training.precision,
            keep_logits=False,
        )
    return results(training, evaluation, log)


def train_one_epoch(
    t: Training, epoch: int, stop: StopRequests, say: Log
) -> tuple[dict, float, int]:
    """One pass over the training images, from the step a resumed run stopped at. Returns
    the epoch's sums (loss, correct, seen), its seconds and the images this process trained.
    Ctrl-C or SIGTERM on any rank stops every rank after the same whole step."""
    config, state, session, device = t.config, t.state, distributed.current(), t.device
    started = time.perf_counter()
    sums = dict(state.totals or {"loss": 0.0, "correct": 0, "seen": 0})
    seen_before = sums["seen"]  # images of this epoch trained before a resume
    t.trained.train()
    progress = tqdm(
        total=t.steps,
        initial=state.batch,
        disable=not session.is_main,
        unit="batch",
        desc=f"epoch {epoch + 1}/{config.epochs}",
        leave=False,
        mininterval=0.5,
    )
    batches = t.source.train_batches(
        epoch, config.batch_size, config.seed, session.rank, session.world_size, state.batch
    )
    step_ended = time.perf_counter()
    with progress:  # the bar is cleared however the epoch ends
        for batch_index, (images, labels) in enumerate(batches, start=state.batch):
            step = epoch * t.steps + batch_index
            _seed_global_draws(mix(config.seed, step, session.rank), device)
            rate = learning_rate(step, t.total_steps, config.lr, config.warmup_fraction)
            set_learning_rate(t.optimizer, rate)
            # The named phases show up in a profile (benchmarks/profile_epoch.py).
            with record_function("data"):
                images = images.to(device, non_blocking=True).contiguous(memory_format=t.layout)
                labels = labels.to(device, non_blocking=True)
            loss, logits = _forward_backward(t, images, labels)
            loss_total, valid, correct, stop_asked = _step_counts(
                loss, logits, labels, stop.requested
            )
            if not math.isfinite(loss_total):  # every rank sees the same sum: all stop
                if not session.is_main:
                    raise distributed.PeerFailure(0)
                raise _stopped(t, f"loss became {loss_total} at epoch {epoch + 1}, step {step}")
            with record_function("optimizer"):
                t.scaler.step(t.optimizer)  # unscales first; skips a step that overflowed
                t.scaler.update()
            sums = {
                "loss": sums["loss"] + loss_total,
                "seen": sums["seen"] + int(valid),
                "correct": sums["correct"] + int(correct),
            }
            step_started, step_ended = step_ended, time.perf_counter()
            speed = round(valid / max(step_ended - step_started, 1e-9), 1)
            t.step_rows.append((step + 1, epoch + 1, loss_total / max(valid, 1), rate, speed))
            progress.update()
            progress.set_postfix(
                loss=f"{sums['loss'] / max(sums['seen'], 1):.4f}",
                acc=f"{sums['correct'] / max(sums['seen'], 1):.4f}",
                refresh=False,
            )
            state.batch, state.totals = batch_index + 1, sums
            seconds = state.train_seconds + time.perf_counter() - started
            if stop_asked:  # Ctrl-C or SIGTERM on some rank: all stop after this whole step
                checkpoint(t, seconds)
                progress.close()  # before the message below
                say(
                    f"Interrupted: checkpoint saved at epoch {epoch + 1}, batch {state.batch}. "
                    f"Continue with: convnet train --resume {t.run.path}"
                )
                raise KeyboardInterrupt
            every = config.checkpoint_every
            if every and state.batch % every == 0 and state.batch < t.steps:
                checkpoint(t, seconds)
    return sums, time.perf_counter() - started, sums["seen"] - seen_before


def end_epoch(
    t: Training, epoch: int, sums: dict, seconds: float, images: int, say: Log
) -> Evaluation:
    """Score the held-out images, add the epoch's row to the history and commit the epoch:
    weights and metrics.csv, then the checkpoint, which a crash before it redoes."""
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
    state.epoch, state.batch, state.totals = epoch + 1, 0, None
    if t.board is not None:
        t.board.epoch(state.history[-1], state.epoch * t.steps)
    if distributed.is_main():
        metadata = {
            "model": config.model,
            "dataset": config.source_name,
            "num_classes": str(len(config.classes)),
            # how its image files are prepared, for the file read without its run
            "preparation": trained_preparation(config.data, config.dataset),
        }
        with resumable_after_write_failure(run):
            save_weights(run.weights_path, t.model, metadata)
            run.write_history(state.history)
    checkpoint(t)
    row = state.history[-1]
    say(
        f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f}, "
        f"{t.source.eval_split} error {scores['top1_error']:.2%} (top-5 "
        f"{scores['top5_error']:.2%}), {row['images_per_second']:,.0f} images/s"
    )
    return evaluation


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
        raise _stopped(
            t, f"the weights became non-finite at epoch {shown}, batch {state.batch or t.steps}"
        )
    kept = replace(state, grad_scaler=t.scaler.state_dict())
    if seconds is not None:
        kept.train_seconds = seconds
    with resumable_after_write_failure(run):
        save_checkpoint(run.checkpoint_path, t.model, t.optimizer, kept)


# --- one step -----------------------------------------------------------------------------


def _forward_backward(
    t: Training, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch's summed loss and its logits, gradients computed; a batch too large for
    memory is the user's to shrink (UserError)."""
    try:
        with record_function("forward"):
            with autocast(t.device, t.precision):
                logits = t.trained(images)
            loss = loss_sum(logits, labels, t.config.label_smoothing)
        with record_function("backward"):
            t.optimizer.zero_grad(set_to_none=True)
            t.scaler.scale(loss / len(labels)).backward()
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        raise out_of_memory(error, t.config.batch_size, t.device) from None
    return loss, logits


def _step_counts(
    loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, stop_asked: bool
) -> tuple[float, float, float, bool]:
    """The step's summed loss, valid and correct images over all ranks, and whether any rank
    was asked to stop: one collective, one transfer to the host."""
    counts = torch.stack(
        [
            loss.detach().float(),
            (labels >= 0).sum().float(),
            (logits.argmax(1) == labels).sum().float(),
        ]
    )
    if distributed.current().distributed:
        flag = torch.tensor([float(stop_asked)], device=counts.device)
        counts = distributed.all_reduce_sum(torch.cat([counts, flag]))
        stop_asked = bool(counts[3] > 0)
    loss_total, valid, correct = counts[:3].tolist()
    return loss_total, valid, correct, stop_asked


def _seed_global_draws(seed: int, device: torch.device) -> None:
    """Seed the generators dropout draws from: the CPU's, and the GPU's when training there
    (torch.manual_seed visits every device: 0.15–0.25 ms, 2–3% of a LeNet-5 step)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def _stopped(t: Training, reason: str) -> UserError:
    kept = (
        f"The last good checkpoint is kept in {t.run.checkpoint_path}"
        if t.run.checkpoint_path.is_file()
        else "No checkpoint had been written yet"
    )
    return UserError(f"Training stopped: {reason}. {kept}; try a smaller --lr.")


# --- the results --------------------------------------------------------------------------


def results(t: Training, evaluation: Evaluation, log: Log) -> dict:
    """The run's results (rank 0; {} on the others), written to results.json: the last
    evaluation, how training went, and a check that every replica holds the same weights."""
    config, session, source = t.config, distributed.current(), t.source
    # Every replica must hold the same weights; a real check, since it is cheap.
    digests = (
        distributed.gather_objects(distributed.weight_digest(t.model))
        if session.distributed
        else []
    )
    if not session.is_main:
        return {}
    if len(set(digests)) > 1:
        log(f"Warning: the {len(digests)} replicas ended with different weights: {digests}")
    history, seconds = t.state.history, t.state.train_seconds
    seen = sum(row["images_per_second"] * row["epoch_seconds"] for row in history)
    result = {
        "model": config.model,
        "dataset": config.source_name,
        **({"data_dir": config.data} if config.data else {}),
        **evaluation.result,
        "params": sum(p.numel() for p in t.model.parameters()),
        "epochs": config.epochs,
        "train_seconds": round(seconds, 3),
        "images_per_second": round(seen / max(seconds, 1e-9), 1),
        "precision": t.precision,
        "device": str(session.device),
        "threads": torch.get_num_threads(),
        "world_size": session.world_size,
        "backend": session.backend,
        "batch_size": config.batch_size,
        "global_batch_size": config.batch_size * session.world_size,
        "replicas_identical": len(set(digests)) <= 1,
        "run_dir": str(t.run.path),
    }
    if digests:
        result["weight_digests"] = digests
    warning = learning_warning(t.run.steps(), len(config.classes))
    result["warnings"] = [*result.get("warnings", []), *([warning] if warning else [])]
    for index in sorted(source.failed_training):
        path, why = source.training_failure(index)
        result["skipped"].append({"file": path, "reason": why})
    result["num_skipped"] = len(result["skipped"])
    if source.kind == "images":  # how the images were read, as `convnet evaluate` reports it
        result["layout"], result["workers"] = source.layout, config.workers
        result["preprocessing"] = {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in source.preprocessing.items()
        }
    with resumable_after_write_failure(t.run):
        atomic_write_json(t.run.results_path, result)
    return result
