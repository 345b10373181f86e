"""Training: one configuration dataclass, `train_one_epoch`, and `fit`, which reads top to bottom.

The whole data set sits in memory as one float tensor; batches are slices of it, augmented
with one batched affine transform. Every random draw of step s comes from a generator
seeded with (seed, s), so a run resumed from a checkpoint taken at any step continues
exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import record_function
from tqdm import tqdm

from convnet.data.datasets import load_dataset
from convnet.data.transforms import normalize, random_affine, to_model_input
from convnet.engine.checkpoint import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    WEIGHTS_FILE,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    remove_partial_files,
    save_checkpoint,
    save_weights,
)
from convnet.engine.device import autocast, resolve_device, resolve_precision
from convnet.engine.evaluate import evaluate
from convnet.engine.run_control import StopRequests
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec

METRICS_FILE = "metrics.csv"
RESULTS_FILE = "results.json"


@dataclass
class TrainConfig:
    """Everything a run depends on; None means "the model's default" (see its registry entry)."""

    model: str = "lenet5"
    dataset: str = "mnist"
    data_dir: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    warmup_fraction: float = 0.15  # share of the steps spent ramping the learning rate up
    augment: bool | None = None
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    out: str | None = None
    checkpoint_every: int = 0  # also checkpoint every N steps (0: at the end of each epoch only)
    train_subset: int | None = None  # use only the first N training images (tests, quick looks)
    test_subset: int | None = None
    model_config: dict = field(default_factory=dict)

    def resolved(self) -> TrainConfig:
        """A copy with the model's defaults filled in and every value checked."""
        spec = get_model_spec(self.model)
        values = asdict(self)
        for key, default in spec.train_defaults.items():
            if values.get(key) is None:
                values[key] = default
        for key, fallback in (("epochs", 10), ("batch_size", 128), ("lr", 0.05),
                              ("weight_decay", 0.0), ("augment", False)):  # fmt: skip
            if values[key] is None:
                values[key] = fallback
        config = TrainConfig(**values)
        if config.epochs < 1:
            raise UserError(f"--epochs must be at least 1, not {config.epochs}.")
        if config.batch_size < 1:
            raise UserError(f"--batch-size must be at least 1, not {config.batch_size}.")
        if not (config.lr > 0 and math.isfinite(config.lr)):
            raise UserError(f"--lr must be a positive number, not {config.lr}.")
        if config.checkpoint_every < 0:
            raise UserError(f"--checkpoint-every must be 0 or more, not {config.checkpoint_every}.")
        for name in ("train_subset", "test_subset"):
            value = getattr(config, name)
            if value is not None and value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1, not {value}.")
        return config

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """The configuration a run saved; ValueError names what is wrong with a damaged one."""
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("it holds no JSON object")
        allowed = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
                   "dict": (dict,), "None": (type(None),)}  # fmt: skip
        values = {}
        for item in fields(cls):
            if item.name not in document:
                continue
            value = document[item.name]
            names = [kind.strip() for kind in str(item.type).split("|")]
            kinds = sum((allowed.get(name, (object,)) for name in names), ())  # unknown: any
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise ValueError(f'"{item.name}" is {json.dumps(value)}, not of type {item.type}')
            values[item.name] = value
        return cls(**values)


def learning_rate(step: int, total_steps: int, peak: float, warmup_fraction: float) -> float:
    """Linear warm-up from peak/20 to peak, then cosine decay to zero (a pure function of
    the step, so resuming needs no scheduler state)."""
    warmup = max(1, int(total_steps * warmup_fraction))
    if step < warmup:
        return peak * (0.05 + 0.95 * step / warmup)
    progress = (step - warmup) / max(1, total_steps - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _layout(model: nn.Module) -> torch.memory_format:
    """Channels-last for networks with 2-D convolutions, the default layout otherwise."""
    has_convolutions = any(parameter.dim() == 4 for parameter in model.parameters())
    return torch.channels_last if has_convolutions else torch.contiguous_format


def _step_generator(seed: int, *counters: int) -> torch.Generator:
    value = seed
    for counter in counters:
        value = value * 1_000_003 + counter
    return torch.Generator().manual_seed(value % (2**63))


def _seed_global_draws(seed: int, device: torch.device) -> None:
    """Seed the generators dropout draws from: the CPU's, and the GPU's when training there
    (torch.manual_seed visits every device: 0.15–0.25 ms, 2–3% of a LeNet-5 step)."""
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)


def train_one_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    config: TrainConfig,
    epoch: int,
    steps_per_epoch: int,
    device: torch.device,
    precision: str,
    normalization: tuple[float, float],
    start_batch: int = 0,
    totals: dict | None = None,
    on_step: Callable[[int, dict], None] | None = None,
) -> dict:
    """Train over one shuffled pass of the data; `start_batch` resumes inside the epoch."""
    model.train()
    layout = _layout(model)
    order = torch.randperm(len(images), generator=_step_generator(config.seed, epoch))
    totals = dict(totals or {"loss": 0.0, "correct": 0, "seen": 0})
    total_steps = steps_per_epoch * config.epochs
    started = time.perf_counter()
    progress = tqdm(
        range(start_batch, steps_per_epoch), initial=start_batch, total=steps_per_epoch,
        desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False, mininterval=0.5,
    )  # fmt: skip
    for batch_index in progress:
        step = epoch * steps_per_epoch + batch_index
        generator = _step_generator(config.seed, epoch, batch_index, 1)
        _seed_global_draws(generator.initial_seed() + 1, device)  # dropout and the like
        # The named phases show up in a profile (benchmarks/profile_epoch.py).
        with record_function("data"):
            indices = order[batch_index * config.batch_size : (batch_index + 1) * config.batch_size]
            batch, target = images[indices], labels[indices]
            if config.augment:
                batch = random_affine(batch, generator)
            batch = normalize(batch, *normalization).to(device, non_blocking=True)
            batch = batch.contiguous(memory_format=layout)
            target = target.to(device, non_blocking=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total_steps, config.lr, config.warmup_fraction)
        with record_function("forward"):
            with autocast(device, precision):
                logits = model(batch)
            loss = F.cross_entropy(logits.float(), target, label_smoothing=config.label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch + 1}, step {step}")
        with record_function("backward"):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with record_function("optimizer"):
            optimizer.step()
        totals["loss"] += loss.item() * len(target)
        totals["correct"] += int((logits.argmax(1) == target).sum())
        totals["seen"] += len(target)
        elapsed = time.perf_counter() - started
        done = (batch_index + 1 - start_batch) * config.batch_size
        progress.set_postfix(
            loss=f"{totals['loss'] / totals['seen']:.4f}",
            acc=f"{totals['correct'] / totals['seen']:.4f}",
            img_s=f"{done / max(elapsed, 1e-9):,.0f}",
            refresh=False,
        )
        if on_step is not None:
            on_step(batch_index + 1, totals)
    progress.close()
    return {
        "train_loss": totals["loss"] / max(totals["seen"], 1),
        "train_error": 1 - totals["correct"] / max(totals["seen"], 1),
        "seen": totals["seen"],
    }


class _Interrupted(Exception):
    """Raised between steps after Ctrl-C, once the checkpoint is written."""


def _default_run_dir(config: TrainConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model}-{config.dataset}-{stamp}"


def metrics_csv(history: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def fit(
    config: TrainConfig, resume: Path | None = None, log: Callable[[str], None] = print
) -> dict:
    """Train `config.model`, evaluating on the test split after every epoch; return results.

    The run directory receives config.json, metrics.csv, model.safetensors, a checkpoint
    written atomically at the end of every epoch (and every `checkpoint_every` steps), and
    results.json with the final evaluation.
    """
    if resume is not None:
        config_path = Path(resume) / CONFIG_FILE
        if not config_path.is_file():
            raise UserError(f"Cannot resume: {config_path} does not exist.")
        try:
            config = TrainConfig.from_json(config_path.read_text())
        except ValueError as error:  # also bad JSON and undecodable bytes
            raise UserError(
                f"Cannot resume: {config_path} is not a valid run configuration ({error})."
            ) from None
        config.out = str(resume)
    config = config.resolved()
    spec = get_model_spec(config.model)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    data_dir = Path(config.data_dir) if config.data_dir else None

    train = load_dataset(config.dataset, "train", data_dir)
    test = load_dataset(config.dataset, "test", data_dir)
    if config.train_subset:
        train = train.subset(config.train_subset)
    if config.test_subset:
        test = test.subset(config.test_subset)
    train_images = to_model_input(train.images, spec.input_size)
    test_images = to_model_input(test.images, spec.input_size)
    num_classes = len(train.class_names)

    torch.manual_seed(config.seed)
    model = get_model(config.model, num_classes=num_classes, **config.model_config)
    # Channels-last: oneDNN's (and cuDNN's) native layout, so no reorder runs around each
    # convolution; measured 1.3–2.5× on lenet5 training here (benchmarks/train_speed.py).
    model = model.to(device, memory_format=_layout(model))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, nesterov=True,
        weight_decay=config.weight_decay, foreach=True,
    )  # fmt: skip
    steps_per_epoch = math.ceil(len(train_images) / config.batch_size)

    run_dir = Path(config.out) if config.out else _default_run_dir(config)
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_partial_files(run_dir)  # writes a killed process left unfinished
    checkpoint_path = run_dir / CHECKPOINT_FILE
    history: list[dict] = []
    start_epoch, start_batch, totals, train_seconds = 0, 0, None, 0.0
    if resume is not None:
        if not checkpoint_path.is_file():
            raise UserError(f"Cannot resume: {checkpoint_path} does not exist.")
        state = load_checkpoint(checkpoint_path, model, optimizer)
        history, start_epoch, start_batch = state["history"], state["epoch"], state["batch"]
        totals, train_seconds = state.get("totals"), state.get("train_seconds", 0.0)
        log(f"Resuming {run_dir} at epoch {start_epoch + 1}, batch {start_batch}.")
    atomic_write_json(run_dir / CONFIG_FILE, asdict(config))
    metadata = {"model": config.model, "dataset": config.dataset, "num_classes": str(num_classes)}

    def stopped(reason: str) -> UserError:
        kept = (
            f"The last good checkpoint is kept in {checkpoint_path}"
            if checkpoint_path.is_file()
            else "No checkpoint had been written yet"
        )
        return UserError(f"Training stopped: {reason}. {kept}; try a smaller --lr.")

    def check_weights(epoch: int, batch: int) -> None:
        """Never save weights that are no longer numbers (a finite loss can precede them)."""
        if not all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters()):
            raise FloatingPointError(
                f"the weights became non-finite at epoch {epoch + 1}, batch {batch}"
            )

    def checkpoint(epoch: int, batch: int, partial: dict | None, seconds: float) -> None:
        check_weights(epoch - 1 if batch == 0 else epoch, batch or steps_per_epoch)
        save_checkpoint(checkpoint_path, model, optimizer, {
            "epoch": epoch, "batch": batch, "totals": partial, "history": history,
            "train_seconds": seconds,
        })  # fmt: skip

    result: dict = {}
    stop = StopRequests()
    for epoch in range(start_epoch, config.epochs):
        epoch_started = time.perf_counter()
        position = {"batch": start_batch, "totals": totals}

        def on_step(
            batch: int, partial: dict, epoch: int = epoch, before: float = train_seconds,
            started: float = epoch_started, position: dict = position,
        ) -> None:  # fmt: skip
            position.update(batch=batch, totals=dict(partial))
            seconds = before + time.perf_counter() - started
            if stop.requested:  # Ctrl-C or SIGTERM: the step is complete, so this resumes exactly
                checkpoint(epoch, batch, partial, seconds)
                raise _Interrupted
            every = config.checkpoint_every
            if every and batch % every == 0 and batch < steps_per_epoch:
                checkpoint(epoch, batch, partial, seconds)

        try:
            with stop:
                stats = train_one_epoch(
                    model, optimizer, train_images, train.labels, config, epoch, steps_per_epoch,
                    device, precision, spec.normalization, start_batch, totals, on_step,
                )  # fmt: skip
        except _Interrupted:
            log(f"Interrupted: checkpoint saved at epoch {epoch + 1}, batch {position['batch']}. "
                f"Continue with: convnet train --resume {run_dir}")  # fmt: skip
            raise KeyboardInterrupt from None
        except FloatingPointError as error:
            raise stopped(str(error)) from None
        epoch_seconds = time.perf_counter() - epoch_started
        train_seconds += epoch_seconds
        result, _ = evaluate(model, test_images, test.labels, test.class_names,
                             spec.normalization, device, precision)  # fmt: skip
        history.append({
            "epoch": epoch + 1,
            "train_loss": round(stats["train_loss"], 6),
            "train_error": round(stats["train_error"], 6),
            "test_error": result["top1_error"],
            "test_top5_error": result["top5_error"],
            "lr": round(optimizer.param_groups[0]["lr"], 8),
            "epoch_seconds": round(epoch_seconds, 3),
            "images_per_second": round(stats["seen"] / epoch_seconds, 1),
        })  # fmt: skip
        start_batch, totals = 0, None
        try:
            check_weights(epoch, steps_per_epoch)
        except FloatingPointError as error:
            raise stopped(str(error)) from None
        save_weights(run_dir / WEIGHTS_FILE, model, metadata)
        checkpoint(epoch + 1, 0, None, train_seconds)
        atomic_write_text(run_dir / METRICS_FILE, metrics_csv(history))
        log(f"epoch {epoch + 1}/{config.epochs}: train loss {stats['train_loss']:.4f}, "
            f"test error {result['top1_error']:.2%}, {history[-1]['images_per_second']:,.0f} images/s")  # fmt: skip

    if not result:  # resumed a run that had already finished: evaluate what it left
        result, _ = evaluate(model, test_images, test.labels, test.class_names,
                             spec.normalization, device, precision)  # fmt: skip
    seen = sum(row["images_per_second"] * row["epoch_seconds"] for row in history)
    result = {
        "model": config.model,
        "dataset": config.dataset,
        **result,
        "params": sum(p.numel() for p in model.parameters()),
        "epochs": config.epochs,
        "train_seconds": round(train_seconds, 3),
        "images_per_second": round(seen / max(train_seconds, 1e-9), 1),
        "precision": precision,
        "device": str(device),
        "run_dir": str(run_dir),
    }
    atomic_write_json(run_dir / RESULTS_FILE, result)
    return result
