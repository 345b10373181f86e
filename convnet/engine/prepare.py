"""Preparing a run: `prepare` resolves the configuration (here, once), opens the data, makes
the run directory, builds the model, its optimizer and the training state — new, or from a
resumed run's checkpoint — on every rank, and returns them as one `Training`.

Under torchrun, rank 0 alone reads a resumed run's files (other machines may not see them)
and makes the run directory; what it finds is broadcast. A UserError on any rank stops every
rank with one message (`distributed.together`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel

from convnet.data.sources import DataSource, steps_per_epoch, training_data
from convnet.engine import distributed, run_lock
from convnet.engine.checkpoint import TrainState, load_checkpoint
from convnet.engine.compiling import compiled_for_training
from convnet.engine.config import TrainConfig
from convnet.engine.device import grad_scaler, layout_for, resolve_precision, set_cudnn_benchmark
from convnet.engine.evaluate import Evaluation
from convnet.engine.guards import check_input
from convnet.engine.recipe import (
    Schedule,
    batch_mixing,
    create_optimizer,
    freeze,
    moving_average,
    short_run_batch,
)
from convnet.engine.resume import resumed_config
from convnet.engine.run import Run
from convnet.engine.tensorboard import TensorBoardLog
from convnet.engine.threads import resume_threads
from convnet.engine.weight_files import weights_path
from convnet.engine.weight_fit import find_classifier, load_weights
from convnet.errors import UserError
from convnet.files import ensure_writable
from convnet.models import get_model
from convnet.wording import counted

Log = Callable[[str], None]


@dataclass
class Training:
    """What a run trains with, built once by `prepare`: the resolved configuration, the run
    directory, the data, the model (and `trained`, its DistributedDataParallel wrapper under
    torchrun), the optimizer, fp16's loss scaler, and the state a checkpoint keeps."""

    config: TrainConfig
    run: Run
    source: DataSource
    model: nn.Module
    trained: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    state: TrainState
    precision: str
    steps: int  # optimizer steps per epoch
    layout: torch.memory_format  # of the batches: the model's (`layout_for`)
    schedule: Schedule  # the learning rate of each step
    ema: AveragedModel | None = None  # --model-ema: the moving average of the weights
    mixing: Callable | None = None  # --mixup-alpha, --cutmix-alpha: mixes a batch
    frozen: list[str] = field(default_factory=list)  # --freeze: the parameters not trained
    kept: Evaluation | None = None  # the evaluation of the weights model.safetensors holds
    step_rows: list[tuple] = field(default_factory=list)  # steps.csv rows not yet written
    board: TensorBoardLog | None = None  # --tensorboard: written with steps.csv and metrics.csv
    reported: int = 0  # undecodable training images listed so far
    compiled: nn.Module | None = None  # --compile yes: `trained` compiled, until that fails

    @property
    def device(self) -> torch.device:
        return distributed.current().device

    @property
    def kept_model(self) -> nn.Module:
        """The weights the run keeps as its model: the moving average where there is one."""
        return self.ema.module if self.ema is not None else self.model

    def frozen_norms(self) -> list[nn.Module]:
        """Normalization layers whose every parameter is frozen: they train in evaluation
        mode, so their running statistics stay as loaded too."""
        names = set(self.frozen)
        return [
            module
            for prefix, module in self.model.named_modules()
            if isinstance(module, nn.modules.batchnorm._NormBase)
            and (own := [f"{prefix}.{n}" if prefix else n for n, _ in module.named_parameters()])
            and names.issuperset(own)
        ]


def prepare(
    requested: TrainConfig | None,
    resume: Path | None,
    changes: dict,
    module: nn.Module | None,
    say: Log,
    data: DataSource | None = None,
    restart: bool = False,
) -> Training:
    """Everything training needs, for a new run of `requested` or a resumed one: the
    configuration resolved (here, once), the data, the run directory, the model with its
    initial or checkpointed weights, the optimizer and the training state, on every rank.
    With `restart`, `resume` continues if it holds a checkpoint, else `requested` starts
    there. A resumed run reads the data where this rank's `changes` say (each machine its own)."""
    session = distributed.current()
    saved, planned = distributed.broadcast_object(
        distributed.together(_read_saved, resume, changes, restart)
    )
    if saved is None:  # a new run (or a restart before the first checkpoint)
        resume = None
    elif changes.get("data"):  # each machine reads the data at its own path
        saved.data = str(Path(changes["data"]).expanduser().resolve())
    given = saved or requested
    # an unsupported precision (fp16 off CUDA) is refused before the run directory is made
    precision = resolve_precision(given.precision, session.device)
    _check_module(given, module)
    if (given.custom_data is not None) != (data is not None):
        raise UserError(
            "This run trained on a Dataset of your own, which is not in its run directory; "
            "start a new run with convnet.fit(model, data=dataset)."
            if data is None
            else "A Dataset of your own needs `custom_data` in its configuration (convnet.fit "
            "builds it)."
        )
    config, run, source = distributed.together(_open, given, saved is not None, say, data)
    run = Run(distributed.broadcast_object(str(run.path)))
    for path, why in source.skipped[:5]:
        say(f"Skipped {path} ({why}).")
    left_out = getattr(source, "left_out", [])
    for path, why in left_out[:5]:
        say(f"Left out {path} ({why}).")
    if len(left_out) > 5:
        say(f"… and {len(left_out) - 5} more files left out (listed in the results).")
    for warning in getattr(source, "warnings", []):
        say(f"Warning: {warning}")
    model, optimizer, ema, state, frozen = distributed.together(
        _build, config, run, source, module, resume, say
    )
    state = distributed.broadcast_object(state) or TrainState()
    set_cudnn_benchmark(session.device, config.model_inputs()[0])  # every batch: one size
    if ema is not None and session.distributed:  # rank 0's average, resumed or fresh
        ema.load_state_dict(
            distributed.broadcast_object(_cpu_state(ema) if session.is_main else None)
        )
    state.train_images = source.train_count
    state.global_batch = config.batch_size * session.world_size * config.grad_accum_steps
    scaler = grad_scaler(session.device, precision)  # fp16: loss scaling; else a pass-through
    if state.grad_scaler:
        scaler.load_state_dict(state.grad_scaler)
    distributed.broadcast_optimizer_state(optimizer)
    # DDP broadcasts rank 0's parameters and buffers when it wraps the model, then averages
    # gradients across ranks during every backward pass.
    trained = model
    if session.distributed:
        device_ids = [session.device] if session.device.type == "cuda" else None
        trained = DistributedDataParallel(model, device_ids=device_ids)
    steps = steps_per_epoch(  # shards pad their epoch to a whole number of streams
        getattr(source, "epoch_length", source.train_count),
        config.batch_size * config.grad_accum_steps,
        session.world_size,
    )
    training = Training(
        config,
        run,
        source,
        model,
        trained,
        optimizer,
        scaler,
        state,
        precision,
        steps,
        layout_for(model),
        Schedule.of(config, steps),
        ema,
        batch_mixing(config.mixup_alpha, config.cutmix_alpha, len(config.classes)),
        frozen,
    )
    if config.compile == "yes":
        training.compiled = compiled_for_training(trained)
    _start_log(training, saved is not None, planned, say)
    return training


def _read_saved(
    resume: Path | None, changes: dict, restart: bool = False
) -> tuple[TrainConfig | None, int | None]:
    """Rank 0 reads a resumed run's configuration (other machines may not see it), with the
    epochs it had planned; (None, None) for a new run, and for a `restart` of a run that had
    not saved a checkpoint yet (it starts afresh)."""
    if resume is None or not distributed.is_main():
        return None, None
    if restart and not Run(resume).checkpoint_path.is_file():
        return None, None
    try:
        saved, planned = resumed_config(Run(resume), changes, distributed.current())
    except UserError as error:
        if not restart:
            raise
        raise UserError(
            f"--out {resume} holds the checkpoint of a run, which the same command under "
            f"torchrun continues; this command differs: {error}"
        ) from None
    saved.validate()
    return saved, planned


def _check_module(config: TrainConfig, module: nn.Module | None) -> None:
    if (config.custom_module is not None) == (module is not None):
        return
    raise UserError(
        "This run trains a module of your own, which only the Python API can pass "
        "(convnet.fit(module, ...)); its run directory does not hold the module's code."
        if config.custom_module is not None
        else "A module of your own needs `custom_module` in its configuration "
        "(convnet.fit builds it)."
    )


def _open(
    given: TrainConfig, resumed: bool, say: Log, data: DataSource | None = None
) -> tuple[TrainConfig, Run, DataSource]:
    """The resolved configuration, its data, and the run directory (made by rank 0). A new
    run's default batch is fitted to its number of training images (`short_run_batch`)."""
    session = distributed.current()
    config = given if resumed else given.resolved(session.world_size)
    input_size, normalization = config.model_inputs()
    source = data or training_data(
        input_size,
        normalization,
        dataset=config.dataset,
        data=config.data,
        data_dir=config.data_dir,
        classes=config.classes,
        augment=config.augment,
        val_fraction=config.val_fraction,
        seed=config.seed,
        strict=config.strict,
        workers=config.workers,
        train_subset=config.train_subset,
        test_subset=config.test_subset,
        pin_memory=session.device.type == "cuda",
        auto_augment=config.auto_augment,
        random_erase=config.random_erase,
        shard_streams=config.shard_streams,
        world_size=session.world_size,
    )
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
    config.classes = list(source.class_names)
    if not resumed and given.batch_size is None:  # the default batch: fit it to the run
        config.batch_size, why = short_run_batch(
            config.batch_size,
            source.train_count,
            config.epochs,
            session.world_size,
            config.grad_accum_steps,
        )
        if why:
            say(why)
    run = Run(config.out or "")
    if session.is_main:  # a new run's default name, or the resumed one; locked from here
        run = Run.create(config, say)
    if (
        session.is_main
        and not resumed
        and (run.weights_path.is_file() or run.checkpoint_path.is_file())
    ):
        run_lock.release(run.path)
        raise UserError(
            f"{run.path} already holds a trained run; continue it with 'convnet train "
            f"--resume {run.path}', or give another --out."
        )
    return config, run, source


def _build(
    config: TrainConfig,
    run: Run,
    source: DataSource,
    module: nn.Module | None,
    resume: Path | None,
    say: Log,
) -> tuple[nn.Module, torch.optim.Optimizer, AveragedModel | None, TrainState | None, list[str]]:
    """The model (seeded; initial --weights for a new run, --freeze applied), on its device
    in its layout; its optimizer and moving average; on rank 0 of a resumed run the
    checkpoint's state, checked against the data and the epochs asked for; the names of the
    frozen parameters."""
    main = distributed.is_main()
    torch.manual_seed(config.seed)
    input_size, _ = config.model_inputs()
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
    if config.weights and resume is None:  # a classifier for another class count starts afresh
        path = weights_path(config.model, config.weights)
        load_weights(model, path, replace_classifier=True, adapt_channels=True, log=say)
    frozen = freeze(model, config.freeze)
    model = model.to(distributed.current().device, memory_format=layout_for(model))
    classifier = find_classifier(model)
    optimizer = create_optimizer(
        model,
        config.opt,
        config.lr,
        config.momentum,
        config.weight_decay,
        config.norm_weight_decay,
        tuple(classifier[1]) if classifier else (),
        config.head_lr_scale,
    )
    ema = moving_average(model, config.model_ema_decay) if config.model_ema else None
    state = load_checkpoint(run.checkpoint_path, model, optimizer, ema) if resume and main else None
    if state is None:
        return model, optimizer, ema, None, frozen
    if state.train_images not in (None, source.train_count):
        raise UserError(
            f"{source.name} holds {source.train_count:,} training images, but this run "
            f"trained on {state.train_images:,}: --resume continues a run on the same "
            "images (--data says where they are now). Start a new run for other data."
        )
    _check_same_steps(run, state, config, source)
    if config.epochs < state.epoch:
        raise UserError(
            f"{run.path} has already trained {state.epoch} epochs; --epochs "
            f"{config.epochs} would undo them."
        )
    if config.epochs == state.epoch and run.finished:
        report = (
            ""
            if run.report_path.is_file()
            else f" Its report is missing: 'convnet train --resume {run.path}' in one process "
            "(not under torchrun) writes it without training."
        )
        raise UserError(
            f"{run.path} has finished its {counted(config.epochs, 'epoch')}; resume it with "
            f"--epochs N (more than {config.epochs}) to train it further.{report}"
        )
    return model, optimizer, ema, state, frozen


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu() for key, value in module.state_dict().items()}


def _check_same_steps(run: Run, state: TrainState, config: TrainConfig, source: DataSource) -> None:
    """A resumed run takes the steps its checkpoint counted: the same global batch (saved in
    checkpoints since it was kept), and steps.csv's finished epochs as long as config.json's
    batch makes them (older checkpoints). A hand-edited batch size used to make --resume cut
    steps.csv from 7,036 lines to 18."""
    world_size = distributed.current().world_size
    per_step = config.batch_size * config.grad_accum_steps  # images per process and step
    now = per_step * world_size
    if state.global_batch not in (None, now):
        raise UserError(
            f"{run.path}'s checkpoint was written with {state.global_batch} images per step, but "
            f"its config.json now makes {now}: --resume continues a run as it was. Put "
            f"batch_size and grad_accum_steps back in {run.config_path}, or start a new run."
        )
    finished = [row["step"] for row in run.steps() if row["epoch"] <= state.epoch]
    steps = steps_per_epoch(source.train_count, per_step, world_size)
    if finished and max(finished) != state.epoch * steps:
        raise UserError(
            f"{run.steps_path} has {int(max(finished)):,} steps in the {state.epoch} epochs the "
            f"checkpoint finished, but {run.config_path}'s batch size makes {steps:,} an epoch "
            "(was config.json edited?): --resume continues a run as it was. Put the batch size "
            "back, or start a new run."
        )


def _start_log(t: Training, resumed: bool, planned: int | None, say: Log) -> None:
    """Say what the run trains, write its configuration and, when resumed, cut steps.csv
    back to the checkpoint (rank 0); open the TensorBoard log."""
    config, state, session = t.config, t.state, distributed.current()
    done = state.step(t.steps)
    if resumed:
        say(f"Resuming {t.run.path} at epoch {state.epoch + 1}, batch {state.batch}.")
        threads = resume_threads(state.threads)
        if threads is not None:
            say(
                f"Training on {counted(threads, 'CPU thread')}, as the run did (another count "
                "sums in another order, so it would not continue bit for bit); --threads N "
                "chooses another."
            )
        if planned is not None and planned != config.epochs:
            say(
                f"Continuing to {config.epochs} epochs (planned: {planned}); the learning-rate "
                f"schedule is re-planned over {config.epochs} epochs from here."
            )
    if session.is_main:
        t.run.write_config(config)
        if planned is not None and planned != config.epochs:
            t.run.results_path.unlink(missing_ok=True)  # no longer the finished run's
    backend = f" ({session.backend})" if session.distributed else ""
    say(
        f"{config.model} on {t.source.train_count:,} training and {t.source.eval_count:,} "
        f"{t.source.eval_split} images of {t.source.name}, {len(config.classes)} classes; "
        f"{counted(session.world_size, 'process', 'processes')} × batch {config.batch_size}; {t.precision} on "
        f"{session.device}{backend}."
    )
    if t.frozen:
        values = sum(p.numel() for n, p in t.model.named_parameters() if n in set(t.frozen))
        say(
            f"Frozen (--freeze {' '.join(config.freeze)}): {counted(len(t.frozen), 'parameter tensor')}, "
            f"{values:,} values, which stay as they are."
        )
    if session.is_main and config.tensorboard:
        t.board = TensorBoardLog(t.run.path, done if resumed else None)
    if session.is_main and resumed:
        t.run.keep_steps(done)


def silent(message: str) -> None:
    """The log of ranks other than 0."""
