"""Training: the one loop, `fit`, for every data source, as one process or many (torchrun).

    convnet train lenet5                                           # MNIST in memory
    convnet train resnet18 --data DIR                              # image folders
    torchrun --standalone --nproc_per_node 2 -m convnet train lenet5      # either, on 2 processes

The recipe: SGD with Nesterov momentum 0.9 and weight decay on the weights only, not on
biases or normalization scales (Goyal et al. 2017, §5.1); a linear warm-up, then cosine
decay, as a pure function of the step; cross-entropy with optional label smoothing. What
differs by data source (augmentation, label smoothing, warm-up) is one table,
`convnet.engine.config.SOURCE_DEFAULTS`.

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
import functools
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.profiler import record_function
from tqdm import tqdm

from convnet.data.sources import DataSource, mix, steps_per_epoch
from convnet.engine import distributed
from convnet.engine.checkpoint import load_checkpoint, save_checkpoint, save_weights
from convnet.engine.config import TrainConfig, learning_rate, short_run_batch
from convnet.engine.device import autocast, grad_scaler, is_out_of_memory, resolve_precision
from convnet.engine.evaluate import evaluate
from convnet.engine.guards import (
    check_input,
    check_training_files,
    learning_warning,
    out_of_memory,
    resumable_after_write_failure,
)
from convnet.engine.resume import resumed_config
from convnet.engine.run import Run, model_inputs, training_source
from convnet.engine.run_control import StopRequests
from convnet.engine.tensorboard import TensorBoardLog
from convnet.engine.weights import load_weights, weights_path
from convnet.errors import UserError
from convnet.files import atomic_write_json, ensure_writable
from convnet.models import get_model


def layout_for(model: nn.Module) -> torch.memory_format:
    """Channels-last for networks with 2-D convolutions: oneDNN's (and cuDNN's) native
    layout, so no reorder runs around each convolution (1.3–2.5× on lenet5 training here,
    benchmarks/train_speed.py); the default layout otherwise."""
    has_convolutions = any(parameter.dim() == 4 for parameter in model.parameters())
    return torch.channels_last if has_convolutions else torch.contiguous_format


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only, not on biases or normalization
    scales (Goyal et al. 2017, §5.1; torchvision's `--norm-weight-decay 0`)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _initial_weights(model: nn.Module, config: TrainConfig, log: Callable[[str], None]) -> None:
    """--weights: a file, or torchvision weights by name from the hub cache; a classifier
    for another class count starts from fresh weights (fine-tuning)."""
    load_weights(
        model, weights_path(config.model, config.weights), replace_classifier=True, log=log
    )


def _seed_global_draws(seed: int, device: torch.device) -> None:
    """Seed the generators dropout draws from: the CPU's, and the GPU's when training there
    (torch.manual_seed visits every device: 0.15–0.25 ms, 2–3% of a LeNet-5 step)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def fit(
    config: TrainConfig,
    resume: Path | None = None,
    *,
    changes: dict | None = None,
    stop_after_epoch: int | None = None,
    module: nn.Module | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Train, evaluating on the held-out split after every epoch; return the results.

    `module` trains a user's own nn.Module (the Python API) instead of building the
    registered `config.model`; `config.custom_module` then describes it, and the run
    directory holds its weights but not its code.

    Call inside `distributed.session()` under torchrun (every rank runs this; rank 0 writes
    the run directory and returns the results, the others an empty dict). With `resume`, the
    run continues from its checkpoint; `changes` may set what engine.resume.RESUMABLE_CHANGES lists (more
    epochs re-plan the schedule). `stop_after_epoch` ends the run early, resumably.
    """
    session = distributed.current()
    main = session.is_main
    say = log if main else (lambda message: None)

    def read_saved() -> tuple[TrainConfig, int] | None:
        """Rank 0 reads a resumed run's configuration (other machines may not see it)."""
        if resume is None or not main:
            return None
        saved, planned = resumed_config(Run(resume), changes or {}, session)
        saved.check()
        return saved, planned

    saved = distributed.broadcast_object(distributed.together(read_saved))
    planned = saved[1] if saved else None
    # an unsupported precision (fp16 off CUDA) is refused before the run directory is made
    precision = resolve_precision((saved[0] if saved else config).precision, session.device)
    described = (saved[0] if saved else config).custom_module is not None
    if described != (module is not None):
        raise UserError(
            "This run trains a module of your own, which only the Python API can pass "
            "(convnet.fit(module, ...)); its run directory does not hold the module's code."
            if described
            else "A module of your own needs `custom_module` in its configuration "
            "(convnet.fit builds it)."
        )

    def prepare() -> tuple[TrainConfig, Run, DataSource]:
        resolved = saved[0] if saved else config.resolved(session.world_size)
        source = training_source(resolved, session.device)
        if source.train_count == 0:
            raise UserError(f"{source.name} has no training images.")
        if len(source.class_names) < 2:
            raise UserError(
                f"{source.name} holds {len(source.class_names)} class; a classifier "
                "needs at least 2 (one folder of images per class)."
            )
        if source.eval_count == 0:
            raise UserError(
                f"{source.name} has no held-out ({source.eval_split}) images to "
                "score the run on; add some, or a larger --val-fraction."
            )
        resolved.classes = list(source.class_names)
        if saved is None and config.batch_size is None:  # the default batch: fit it to the run
            resolved.batch_size, why = short_run_batch(
                resolved.batch_size, source.train_count, resolved.epochs, session.world_size
            )
            if why:
                say(why)
        run = Run(resolved.out or "")
        if main and saved is None and (run.weights_path.is_file() or run.checkpoint_path.is_file()):
            raise UserError(
                f"{run.path} already holds a trained run; continue it with 'convnet train "
                f"--resume {run.path}', or give another --out."
            )
        if main:
            run = Run.create(resolved)  # a new run's default name, or the resumed one
        return resolved, run, source

    config, run, source = distributed.together(prepare)
    run = Run(distributed.broadcast_object(str(run.path)))
    device = session.device
    for path, why in source.skipped[:5]:
        say(f"Skipped {path} ({why}).")

    def build() -> tuple[nn.Module, torch.optim.Optimizer, dict | None]:
        torch.manual_seed(config.seed)
        input_size, _ = model_inputs(config)
        model = (
            module
            if module is not None
            else get_model(
                config.model,
                num_classes=len(config.classes),
                in_channels=input_size[0],
                **config.model_config,
            )
        )
        check_input(model, config.model, input_size)
        if main:  # weights, and a checkpoint with the optimizer's momentum: about 3× the model
            size = sum(p.numel() * p.element_size() for p in model.parameters())
            ensure_writable(run.path, 4 * size + 2**20, "this run's weights and checkpoints")
        if config.weights and resume is None:
            _initial_weights(model, config, say)
        model = model.to(device, memory_format=layout_for(model))
        optimizer = torch.optim.SGD(
            parameter_groups(model, config.weight_decay),
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.momentum > 0,
            foreach=True,
        )
        state = load_checkpoint(run.checkpoint_path, model, optimizer) if resume and main else None
        if (
            state is not None
            and state.get("train_images", source.train_count) != source.train_count
        ):
            raise UserError(
                f"{source.name} holds {source.train_count:,} training images, but this run "
                f"trained on {state['train_images']:,}: --resume continues a run on the same "
                "images (--data says where they are now). Start a new run for other data."
            )
        if state is not None and config.epochs < state["epoch"]:
            raise UserError(
                f"{run.path} has already trained {state['epoch']} epochs; --epochs "
                f"{config.epochs} would undo them."
            )
        if state is not None and config.epochs == state["epoch"] and run.finished:
            raise UserError(
                f"{run.path} has finished its {config.epochs} epochs; resume it with "
                f"--epochs N (more than {config.epochs}) to train it further."
            )
        return model, optimizer, state

    model, optimizer, state = distributed.together(build)
    state = distributed.broadcast_object(state)
    scaler = grad_scaler(device, precision)  # fp16: loss scaling; otherwise a pass-through
    if state is not None and state.get("grad_scaler"):
        scaler.load_state_dict(state["grad_scaler"])
    distributed.broadcast_optimizer_state(optimizer)
    # DDP broadcasts rank 0's parameters and buffers when it wraps the model, then averages
    # gradients across ranks during every backward pass.
    trained = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if session.distributed
        else model
    )
    layout = layout_for(model)
    batch_size, world = config.batch_size, session.world_size
    steps = steps_per_epoch(source.train_count, batch_size, world)
    total_steps = steps * config.epochs
    history, start_epoch, start_batch, totals, train_seconds = [], 0, 0, None, 0.0
    if state is not None:
        history, start_epoch, start_batch = state["history"], state["epoch"], state["batch"]
        totals, train_seconds = state.get("totals"), state.get("train_seconds", 0.0)
        say(f"Resuming {run.path} at epoch {start_epoch + 1}, batch {start_batch}.")
        if planned is not None and planned != config.epochs:
            say(
                f"Continuing to {config.epochs} epochs (planned: {planned}); the learning-rate "
                f"schedule is re-planned over {config.epochs} epochs from here."
            )
    if main:
        run.write_config(config)
        if planned is not None and planned != config.epochs:
            run.results_path.unlink(missing_ok=True)  # no longer the finished run's
    say(
        f"{config.model} on {source.train_count:,} training and {source.eval_count:,} "
        f"{source.eval_split} images of {source.name}, {len(config.classes)} classes; "
        f"{world} process(es) × batch {batch_size}; {precision} on {device}"
        f"{f' ({session.backend})' if session.distributed else ''}."
    )
    metadata = {
        "model": config.model,
        "dataset": config.source_name,
        "num_classes": str(len(config.classes)),
    }

    def stopped(reason: str) -> UserError:
        kept = (
            f"The last good checkpoint is kept in {run.checkpoint_path}"
            if run.checkpoint_path.is_file()
            else "No checkpoint had been written yet"
        )
        return UserError(f"Training stopped: {reason}. {kept}; try a smaller --lr.")

    def checkpoint(epoch: int, batch: int, partial: dict | None, seconds: float) -> None:
        """Never save weights that are no longer numbers (a finite loss can precede them)."""
        if not main:
            return
        with resumable_after_write_failure(run):  # the steps up to this checkpoint first
            run.append_steps(step_rows)
        if board is not None:
            board.steps(step_rows)
        step_rows.clear()
        if not all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters()):
            shown = epoch if batch == 0 else epoch + 1  # batch 0: the end of the epoch before
            raise stopped(f"the weights became non-finite at epoch {shown}, batch {batch or steps}")
        with resumable_after_write_failure(run):
            save_checkpoint(
                run.checkpoint_path,
                model,
                optimizer,
                {
                    "epoch": epoch,
                    "batch": batch,
                    "totals": partial,
                    "history": history,
                    "train_seconds": seconds,
                    "train_images": source.train_count,
                    "grad_scaler": scaler.state_dict(),
                },
            )

    step_rows: list[tuple] = []  # steps.csv rows since the last checkpoint
    board = None  # --tensorboard: the event files, written with steps.csv and metrics.csv
    if main and config.tensorboard:
        board = TensorBoardLog(run.path, start_epoch * steps + start_batch if state else None)
    if main and state is not None:
        run.keep_steps(start_epoch * steps + start_batch)
    stop = StopRequests()
    reported = 0  # undecodable training images listed so far
    evaluation = None
    # Ctrl-C or SIGTERM (a scheduler's notice) any time from here on, also during an
    # evaluation or a write, stops the run after a whole step with a checkpoint.
    with stop, contextlib.closing(board) if board else contextlib.nullcontext():
        for epoch in range(start_epoch, config.epochs):
            epoch_started = time.perf_counter()
            sums = dict(totals or {"loss": 0.0, "correct": 0, "seen": 0})
            seen_before = sums["seen"]  # images of this epoch trained before a resume
            trained.train()
            progress = tqdm(
                total=steps,
                initial=start_batch,
                disable=not main,
                unit="batch",
                desc=f"epoch {epoch + 1}/{config.epochs}",
                leave=False,
                mininterval=0.5,
            )
            batches = source.train_batches(
                epoch, batch_size, config.seed, session.rank, world, start_batch
            )
            step_ended = time.perf_counter()
            with progress:  # the bar is cleared however the epoch ends
                for batch_index, (images, labels) in enumerate(batches, start=start_batch):
                    step = epoch * steps + batch_index
                    _seed_global_draws(mix(config.seed, step, session.rank), device)
                    for group in optimizer.param_groups:
                        group["lr"] = learning_rate(
                            step, total_steps, config.lr, config.warmup_fraction
                        )
                    # The named phases show up in a profile (benchmarks/profile_epoch.py).
                    with record_function("data"):
                        images = images.to(device, non_blocking=True).contiguous(
                            memory_format=layout
                        )
                        labels = labels.to(device, non_blocking=True)
                    try:
                        with record_function("forward"):
                            with autocast(device, precision):
                                logits = trained(images)
                            # Undecodable images (label -1) add nothing; dividing by the batch
                            # size, not the valid count, keeps every rank's share of the mean equal.
                            loss_sum = F.cross_entropy(
                                logits.float(),
                                labels,
                                ignore_index=-1,
                                label_smoothing=config.label_smoothing,
                                reduction="sum",
                            )
                        with record_function("backward"):
                            optimizer.zero_grad(set_to_none=True)
                            scaler.scale(loss_sum / len(labels)).backward()
                    except (RuntimeError, MemoryError) as error:
                        if not is_out_of_memory(error):
                            raise
                        raise out_of_memory(error, batch_size, device) from None
                    counts = torch.stack(
                        [
                            loss_sum.detach().float(),
                            (labels >= 0).sum().float(),
                            (logits.argmax(1) == labels).sum().float(),
                        ]
                    )
                    stop_asked = stop.requested
                    if session.distributed:  # and whether any rank was asked to stop
                        flag = torch.tensor([float(stop_asked)], device=counts.device)
                        counts = distributed.all_reduce_sum(torch.cat([counts, flag]))
                        stop_asked = bool(counts[3] > 0)
                    loss_total, valid, correct = counts[:3].tolist()
                    if not math.isfinite(loss_total):  # every rank sees the same sum: all stop
                        if not main:
                            raise distributed.PeerFailure(0)
                        raise stopped(f"loss became {loss_total} at epoch {epoch + 1}, step {step}")
                    with record_function("optimizer"):
                        scaler.step(optimizer)  # unscales first; skips a step that overflowed
                        scaler.update()
                    sums = {
                        "loss": sums["loss"] + loss_total,
                        "seen": sums["seen"] + int(valid),
                        "correct": sums["correct"] + int(correct),
                    }
                    step_started, step_ended = step_ended, time.perf_counter()
                    step_rows.append(
                        (
                            step + 1,
                            epoch + 1,
                            loss_total / max(valid, 1),
                            optimizer.param_groups[0]["lr"],
                            round(valid / max(step_ended - step_started, 1e-9), 1),
                        )
                    )
                    progress.update()
                    progress.set_postfix(
                        loss=f"{sums['loss'] / max(sums['seen'], 1):.4f}",
                        acc=f"{sums['correct'] / max(sums['seen'], 1):.4f}",
                        refresh=False,
                    )
                    seconds = train_seconds + time.perf_counter() - epoch_started
                    if stop_asked:  # Ctrl-C or SIGTERM on some rank: all stop after this whole step
                        checkpoint(epoch, batch_index + 1, sums, seconds)
                        progress.close()  # before the message below
                        say(
                            f"Interrupted: checkpoint saved at epoch {epoch + 1}, batch "
                            f"{batch_index + 1}. Continue with: convnet train --resume {run.path}"
                        )
                        raise KeyboardInterrupt
                    every = config.checkpoint_every
                    if every and (batch_index + 1) % every == 0 and batch_index + 1 < steps:
                        checkpoint(epoch, batch_index + 1, sums, seconds)
            epoch_seconds = time.perf_counter() - epoch_started
            train_seconds += epoch_seconds
            reported = distributed.together(
                functools.partial(check_training_files, source, config.strict, say, reported)
            )
            distributed.average_buffers(model)  # one set of batch-norm statistics for all ranks
            evaluation = evaluate(model, source, device, precision, keep_logits=False)
            scores = evaluation.result
            history.append(
                {
                    "epoch": epoch + 1,
                    "train_loss": round(sums["loss"] / max(sums["seen"], 1), 6),
                    "train_error": round(1 - sums["correct"] / max(sums["seen"], 1), 6),
                    "eval_loss": scores["loss"],
                    "eval_error": scores["top1_error"],
                    "eval_top5_error": scores["top5_error"],
                    "lr": round(optimizer.param_groups[0]["lr"], 8),
                    "epoch_seconds": round(epoch_seconds, 3),
                    "images_per_second": round((sums["seen"] - seen_before) / epoch_seconds, 1),
                }
            )
            start_batch, totals = 0, None
            if board is not None:
                board.epoch(history[-1], (epoch + 1) * steps)
            if main:  # the checkpoint last: it commits the epoch, which a crash before it redoes
                with resumable_after_write_failure(run):
                    save_weights(run.weights_path, model, metadata)
                    run.write_history(history)
            checkpoint(epoch + 1, 0, None, train_seconds)
            say(
                f"epoch {epoch + 1}/{config.epochs}: train loss {history[-1]['train_loss']:.4f}, "
                f"{source.eval_split} error {scores['top1_error']:.2%} (top-5 {scores['top5_error']:.2%}), "
                f"{history[-1]['images_per_second']:,.0f} images/s"
            )
            # Asked to stop during the evaluation or the writes: the epoch's checkpoint is
            # whole, so stop here (under torchrun the ranks agree at the next step instead).
            if stop.requested and not session.distributed and epoch + 1 < config.epochs:
                say(
                    f"Interrupted: checkpoint saved at the end of epoch {epoch + 1}. Continue "
                    f"with: convnet train --resume {run.path}"
                )
                raise KeyboardInterrupt
            if stop_after_epoch is not None and stop_after_epoch <= epoch + 1 < config.epochs:
                say(
                    f"Stopped after epoch {epoch + 1} as asked; continue with: "
                    f"convnet train --resume {run.path}"
                )
                return (
                    {
                        "run_dir": str(run.path),
                        "stopped_after_epoch": epoch + 1,
                        "epochs": config.epochs,
                    }
                    if main
                    else {}
                )

    if evaluation is None:  # resumed a run that had already finished: score what it left
        evaluation = evaluate(model, source, device, precision, keep_logits=False)
    # Every replica must hold the same weights; a real check, since it is cheap.
    digests = (
        distributed.gather_objects(distributed.weight_digest(model)) if session.distributed else []
    )
    if not main:
        return {}
    if len(set(digests)) > 1:
        log(f"Warning: the {len(digests)} replicas ended with different weights: {digests}")
    seen = sum(row["images_per_second"] * row["epoch_seconds"] for row in history)
    result = {
        "model": config.model,
        "dataset": config.source_name,
        **({"data_dir": config.data} if config.data else {}),
        **evaluation.result,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": config.epochs,
        "train_seconds": round(train_seconds, 3),
        "images_per_second": round(seen / max(train_seconds, 1e-9), 1),
        "precision": precision,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "world_size": world,
        "backend": session.backend,
        "batch_size": batch_size,
        "global_batch_size": batch_size * world,
        "replicas_identical": len(set(digests)) <= 1,
        "run_dir": str(run.path),
    }
    if digests:
        result["weight_digests"] = digests
    warning = learning_warning(run.steps(), len(config.classes))
    result["warnings"] = [warning] if warning else []
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
    with resumable_after_write_failure(run):
        atomic_write_json(run.results_path, result)
    return result
