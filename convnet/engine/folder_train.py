"""Training on image folders, as one process or many (torchrun): `fit_folders` reads top to bottom.

The recipe is the standard one for ImageNet classifiers (Goyal et al. 2017, "Accurate, large
minibatch SGD"; torchvision's reference scripts): SGD with momentum 0.9 and weight decay on
the weights only, a linear warm-up then cosine decay, label smoothing 0.1 (Szegedy et al.
2016, §7), random resized crops and horizontal flips.

Data order: one permutation per epoch, seeded by (seed, epoch), of which rank r takes
positions r, r + W, r + 2W, … (DistributedSampler). With a per-process batch B, step s of a
W-process run covers the same W·B images as step s of a one-process run with batch W·B, and
DistributedDataParallel averages gradients as that run's mean loss does. Each image's random
crop and flip are drawn from a generator seeded by (seed, epoch, image index), so the images
themselves match too: a 2-process run ends with the weights of a 1-process run with the
same global batch, up to floating-point summation order, when the model has no batch
normalization (whose statistics are per process) and no dropout (whose masks are).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from convnet.data.folders import (
    FolderDataset,
    evaluation_transform,
    open_image_collection,
    training_transform,
)
from convnet.engine import distributed
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
from convnet.engine.device import autocast, memory_format, resolve_precision
from convnet.engine.folder_metrics import evaluate_shard
from convnet.engine.run_control import (
    ResumableSampler,
    SeededSamples,
    StopRequests,
    ignore_interrupts,
    mix,
)
from convnet.engine.train import METRICS_FILE, RESULTS_FILE, learning_rate, metrics_csv
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec
from convnet.models.imagenet import IMAGENET_NORMALIZATION

# Resize before the centre crop for evaluation: torchvision's 256 → 224 ratio.
CROP_FRACTION = 0.875


@dataclass
class FolderTrainConfig:
    """Everything a folder run depends on; None means the model's default (registry)."""

    model: str = "resnet18"
    data_dir: str = ""
    dataset: str = "folder"  # marks an image-folder run directory
    epochs: int | None = None
    batch_size: int | None = None  # per process; the global batch is batch_size × world_size
    lr: float | None = None  # peak learning rate for the global batch
    weight_decay: float | None = None
    momentum: float = 0.9
    warmup_fraction: float = 0.05  # Goyal et al. 2017 warm up for 5 of 90 epochs
    label_smoothing: float = 0.1
    augment: bool = True
    image_size: int | None = None  # side of the training crop; default the model's input
    val_fraction: float = 0.2  # for a folder without train/ and val/
    strict: bool = False
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    backend: str = "auto"
    workers: int = 2
    weights: str | None = None  # initial weights (a file, or torchvision weights by name)
    out: str | None = None
    world_size: int = 1
    classes: list = field(default_factory=list)
    model_config: dict = field(default_factory=dict)

    def resolved(self, world_size: int) -> FolderTrainConfig:
        spec = get_model_spec(self.model)
        values = asdict(self)
        for key, fallback in (("epochs", 10), ("batch_size", 64), ("lr", 0.01),
                              ("weight_decay", 5e-4)):  # fmt: skip
            if values[key] is None:
                values[key] = spec.train_defaults.get(key, fallback)
        values["image_size"] = values["image_size"] or spec.input_size[1]
        values["world_size"] = world_size
        config = FolderTrainConfig(**values)
        checks = (
            (config.epochs >= 1, f"--epochs must be at least 1, not {config.epochs}"),
            (config.batch_size >= 1, f"--batch-size must be at least 1, not {config.batch_size}"),
            (config.lr > 0 and math.isfinite(config.lr), f"--lr must be positive, not {config.lr}"),
            (config.weight_decay >= 0, "--weight-decay must not be negative"),
            (0 <= config.label_smoothing < 1, "--label-smoothing must be in [0, 1)"),
            (0 < config.val_fraction < 1, "--val-fraction must be between 0 and 1"),
            (config.workers >= 0, "--workers must be 0 or more"),
            (config.image_size >= 8, f"--image-size must be at least 8, not {config.image_size}"),
        )
        for ok, message in checks:
            if not ok:
                raise UserError(message + ".")
        return config

    @classmethod
    def from_dict(cls, values: dict) -> FolderTrainConfig:
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def _parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weight matrices and kernels only, not on biases or normalization scales
    (Goyal et al. 2017, §5.1 footnote; torchvision's `--norm-weight-decay 0`)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() <= 1]
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]  # fmt: skip


def _initial_weights(model: nn.Module, name: str, weights: str) -> None:
    from convnet.engine.checkpoint import load_weights
    from convnet.engine.runs import WEIGHT_NAME, hub_weights

    path = Path(weights)
    if WEIGHT_NAME.match(weights) and not path.exists():
        path, _ = hub_weights(name, weights)
    load_weights(model, path)


def _read_saved_config(run_dir: Path) -> dict:
    config_path = run_dir / CONFIG_FILE
    if not (run_dir / CHECKPOINT_FILE).is_file():
        raise UserError(f"Cannot resume: {run_dir / CHECKPOINT_FILE} does not exist.")
    try:
        import json

        values = json.loads(config_path.read_text())
        if not isinstance(values, dict) or values.get("dataset") != "folder":
            raise ValueError("it is not the configuration of an image-folder run")
        return values
    except (OSError, ValueError) as error:
        raise UserError(f"Cannot resume: {config_path} is not usable ({error}).") from None


def fit_folders(
    config: FolderTrainConfig,
    resume: Path | None = None,
    *,
    data_dir: str | None = None,
    workers: int | None = None,
    stop_after_epoch: int | None = None,
    log=print,
) -> dict:
    """Train on an image folder in this process, one of `WORLD_SIZE` when run by torchrun
    (call inside `distributed.session`). Rank 0 writes the run directory: config.json,
    metrics.csv, model.safetensors, checkpoint.safetensors (every epoch, atomically) and
    results.json; it returns the results, the other ranks an empty dict.

    On resume, `data_dir` and `workers` (where given) replace the saved ones: another machine
    may keep the data elsewhere. `stop_after_epoch` ends the run early, resumably."""
    session = distributed.current()
    main = session.is_main
    say = log if main else (lambda message: None)

    def prepare() -> tuple[FolderTrainConfig, dict | None]:
        saved = _read_saved_config(Path(resume)) if resume is not None and main else None
        saved = distributed.broadcast_object(saved) if resume is not None else None
        values = dict(saved) if saved is not None else asdict(config)
        if saved is not None:
            values["out"] = str(resume)
            global_batch = saved["batch_size"] * saved.get("world_size", 1)
            if global_batch % session.world_size:
                raise UserError(
                    f"This run's global batch is {global_batch}; it cannot be shared by "
                    f"{session.world_size} processes. Resume it with a process count that "
                    "divides it."
                )
            values["batch_size"] = global_batch // session.world_size
        values["data_dir"] = data_dir or values["data_dir"]
        values["workers"] = values["workers"] if workers is None else workers
        return FolderTrainConfig.from_dict(values).resolved(session.world_size), saved

    config, saved = distributed.together(prepare)
    spec = get_model_spec(config.model)
    device = session.device
    precision = resolve_precision(config.precision, device)
    normalization = spec.normalization if spec.input_size[0] == 3 else IMAGENET_NORMALIZATION
    mean, std = normalization
    crop, resize = config.image_size, round(config.image_size / CROP_FRACTION)

    def open_data():
        train = open_image_collection(config.data_dir, "train", val_fraction=config.val_fraction,
                                      seed=config.seed, strict=config.strict)  # fmt: skip
        val = open_image_collection(config.data_dir, "val", val_fraction=config.val_fraction,
                                    seed=config.seed, strict=config.strict)  # fmt: skip
        if saved is not None and list(train.classes) != list(saved.get("classes", [])):
            raise UserError(
                f"The data in {config.data_dir} has other classes than this run was trained on "
                f"({len(train.classes)} vs {len(saved.get('classes', []))})."
            )
        return train, val

    train_data, val_data = distributed.together(open_data)
    config.classes = list(train_data.classes)
    for collection in (train_data, val_data):
        if collection.skipped:
            listed = ", ".join(f"{path.name} ({why})" for path, why in collection.skipped[:5])
            more = len(collection.skipped) - 5
            say(f"Skipped {len(collection.skipped)} file(s) of the {collection.split} split: "
                f"{listed}{f' and {more} more' if more > 0 else ''}.")  # fmt: skip

    def build() -> tuple[nn.Module, torch.optim.Optimizer, dict | None]:
        torch.manual_seed(config.seed)
        model = get_model(config.model, num_classes=len(config.classes), in_channels=3,
                          **config.model_config)  # fmt: skip
        if config.weights and saved is None:
            _initial_weights(model, config.model, config.weights)
        model = model.to(device, memory_format=memory_format(precision))
        optimizer = torch.optim.SGD(_parameter_groups(model, config.weight_decay), lr=config.lr,
                                    momentum=config.momentum, foreach=True)  # fmt: skip
        state = None
        if saved is not None and main:
            state = load_checkpoint(Path(config.out) / CHECKPOINT_FILE, model, optimizer)
        return model, optimizer, state

    model, optimizer, state = distributed.together(build)
    state = distributed.broadcast_object(state)
    distributed.broadcast_optimizer_state(optimizer)
    # DDP broadcasts rank 0's parameters and buffers when it wraps the model, then averages
    # gradients across ranks during every backward pass.
    trained = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if session.distributed
        else model
    )

    augment = training_transform(crop, mean, std) if config.augment else None
    evaluate = evaluation_transform(resize, crop, mean, std)
    train_set = SeededSamples(FolderDataset(train_data, augment or evaluate), config.seed)
    sampler = ResumableSampler(train_set, num_replicas=session.world_size, rank=session.rank,
                               shuffle=True, seed=config.seed, drop_last=False)  # fmt: skip
    loader_options = dict(num_workers=config.workers, pin_memory=device.type == "cuda",
                          generator=torch.Generator().manual_seed(config.seed),
                          worker_init_fn=ignore_interrupts)  # fmt: skip
    train_loader = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler,
                              **loader_options)  # fmt: skip
    # Validation: rank r scores images r, r + W, …, with no padding, so sums are exact.
    val_set = FolderDataset(val_data, evaluate)
    val_indices = list(range(session.rank, len(val_set), session.world_size))
    val_loader = DataLoader(val_set, batch_size=config.batch_size, sampler=val_indices,
                            **loader_options)  # fmt: skip

    steps_per_epoch = math.ceil(sampler.num_samples / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    global_batch = config.batch_size * session.world_size
    run_dir = Path(config.out) if config.out else Path("runs") / f"{config.model}-folder-{time.strftime('%Y%m%d-%H%M%S')}"  # fmt: skip
    run_dir = Path(distributed.broadcast_object(str(run_dir)))
    checkpoint_path = run_dir / CHECKPOINT_FILE
    history, start_epoch, start_batch, totals, train_seconds = [], 0, 0, None, 0.0
    if state is not None:
        history, start_epoch, start_batch = state["history"], state["epoch"], state["batch"]
        totals, train_seconds = state.get("totals"), state.get("train_seconds", 0.0)
        say(f"Resuming {run_dir} at epoch {start_epoch + 1}, batch {start_batch}.")
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_partial_files(run_dir)
        atomic_write_json(run_dir / CONFIG_FILE, asdict(config))
    say(f"{config.model} on {len(train_data.samples):,} training and {len(val_data.samples):,} "
        f"validation images, {len(config.classes)} classes; {session.world_size} process(es) × "
        f"batch {config.batch_size} = global batch {global_batch}; {precision} on {device}"
        f"{f' ({session.backend})' if session.distributed else ''}.")  # fmt: skip

    def save_state(epoch: int, batch: int, partial: dict | None, seconds: float) -> None:
        if not main:
            return
        if not all(bool(torch.isfinite(p.detach()).all()) for p in model.parameters()):
            raise UserError(f"Training stopped: the weights became non-finite at epoch {epoch + 1}. "
                            f"The last good checkpoint is kept in {checkpoint_path}.")  # fmt: skip
        save_checkpoint(checkpoint_path, model, optimizer, {
            "epoch": epoch, "batch": batch, "totals": partial, "history": history,
            "train_seconds": seconds,
        })  # fmt: skip

    layout = memory_format(precision)
    stop = StopRequests()
    val: dict = {}
    for epoch in range(start_epoch, config.epochs):
        epoch_started = time.perf_counter()
        sampler.set_epoch(epoch)  # a new permutation every epoch, the same on every rank
        sampler.skip = start_batch * config.batch_size
        train_set.epoch = epoch
        sums = dict(totals or {"loss": 0.0, "correct": 0.0, "seen": 0.0})
        seen_before = sums["seen"]  # images of this epoch trained before a resume
        trained.train()
        progress = tqdm(total=steps_per_epoch, initial=start_batch, disable=not main,
                        desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", leave=False,
                        mininterval=0.5)  # fmt: skip
        with stop:
            for batch_index, (images, labels, _) in enumerate(train_loader, start=start_batch):
                step = epoch * steps_per_epoch + batch_index
                torch.manual_seed(mix(config.seed, step, session.rank))  # dropout, resumable
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(step, total_steps, config.lr,
                                                config.warmup_fraction)  # fmt: skip
                images = images.to(device, non_blocking=True).contiguous(memory_format=layout)
                labels = labels.to(device, non_blocking=True)
                with autocast(device, precision):
                    logits = trained(images)
                # Undecodable images (label -1) add nothing; dividing by the batch size rather
                # than the valid count keeps every rank's share of the global mean equal.
                loss_sum = F.cross_entropy(logits.float(), labels, ignore_index=-1,
                                           label_smoothing=config.label_smoothing,
                                           reduction="sum")  # fmt: skip
                optimizer.zero_grad(set_to_none=True)
                (loss_sum / len(labels)).backward()
                valid = labels >= 0
                reduced = distributed.all_reduce_sum(torch.stack([
                    loss_sum.detach().float(), valid.sum().float(),
                    (logits.argmax(1) == labels)[valid].sum().float(),
                    torch.tensor(float(stop.requested), device=device),
                    (~torch.isfinite(loss_sum.detach())).float(),
                ]))  # fmt: skip
                if reduced[4] > 0:  # every rank sees the same flag and stops before the update
                    if not main:
                        raise distributed.PeerFailure(0)
                    raise UserError(
                        f"Training stopped: the loss became non-finite at epoch {epoch + 1}, step "
                        f"{step}. The last good checkpoint is kept in {checkpoint_path}; try a "
                        "smaller --lr."
                    )
                optimizer.step()
                sums = {"loss": sums["loss"] + reduced[0].item(),
                        "seen": sums["seen"] + reduced[1].item(),
                        "correct": sums["correct"] + reduced[2].item()}  # fmt: skip
                progress.update()
                progress.set_postfix(loss=f"{sums['loss'] / max(sums['seen'], 1):.4f}",
                                     acc=f"{sums['correct'] / max(sums['seen'], 1):.3f}",
                                     refresh=False)  # fmt: skip
                if reduced[3] > 0:  # some rank was asked to stop: all stop after this step
                    save_state(
                        epoch,
                        batch_index + 1,
                        sums,
                        train_seconds + time.perf_counter() - epoch_started,
                    )
                    progress.close()
                    say(f"Interrupted: checkpoint saved at epoch {epoch + 1}, batch "
                        f"{batch_index + 1}. Continue with: convnet train --resume {run_dir}")  # fmt: skip
                    raise KeyboardInterrupt
        progress.close()
        epoch_seconds = time.perf_counter() - epoch_started
        train_seconds += epoch_seconds
        distributed.average_buffers(model)  # one set of batch-norm statistics for all ranks
        val = evaluate_shard(model, val_loader, config.classes, device, precision, layout)
        history.append({
            "epoch": epoch + 1,
            "train_loss": round(sums["loss"] / max(sums["seen"], 1), 6),
            "train_error": round(1 - sums["correct"] / max(sums["seen"], 1), 6),
            "val_loss": val["val_loss"],
            "val_error": val["top1_error"],
            "val_top5_error": val["top5_error"],
            "lr": round(optimizer.param_groups[0]["lr"], 8),
            "epoch_seconds": round(epoch_seconds, 3),
            "images_per_second": round((sums["seen"] - seen_before) / epoch_seconds, 1),
        })  # fmt: skip
        start_batch, totals = 0, None
        if main:
            save_state(epoch + 1, 0, None, train_seconds)
            save_weights(run_dir / WEIGHTS_FILE, model, {
                "model": config.model, "dataset": "folder", "num_classes": str(len(config.classes)),
                "classes": ",".join(config.classes), "in_channels": "3",
            })  # fmt: skip
            atomic_write_text(run_dir / METRICS_FILE, metrics_csv(history))
        say(f"epoch {epoch + 1}/{config.epochs}: train loss {history[-1]['train_loss']:.4f}, val "
            f"error {val['top1_error']:.2%} (top-5 {val['top5_error']:.2%}), "
            f"{history[-1]['images_per_second']:,.0f} images/s")  # fmt: skip
        if stop_after_epoch is not None and stop_after_epoch <= epoch + 1 < config.epochs:
            say(f"Stopped after epoch {epoch + 1} as asked; continue with: "
                f"convnet train --resume {run_dir}")  # fmt: skip
            return {"run_dir": str(run_dir), "stopped_after_epoch": epoch + 1,
                    "epochs": config.epochs} if main else {}  # fmt: skip

    if not val:  # resumed a finished run: score what it left
        val = evaluate_shard(model, val_loader, config.classes, device, precision, layout)
    # Every replica must hold the same weights; a real check, since it is cheap.
    digests = distributed.gather_objects(distributed.weight_digest(model))
    if not main:
        return {}
    if len(set(digests)) != 1:
        log(f"Warning: the {len(digests)} replicas ended with different weights: {digests}")
    seen = sum(row["images_per_second"] * row["epoch_seconds"] for row in history)
    result = {
        "model": config.model, "dataset": "folder", "data_dir": config.data_dir, **val,
        "params": sum(p.numel() for p in model.parameters()), "epochs": config.epochs,
        "train_seconds": round(train_seconds, 3),
        "images_per_second": round(seen / max(train_seconds, 1e-9), 1),
        "precision": precision, "device": str(device), "world_size": session.world_size,
        "backend": session.backend, "batch_size": config.batch_size, "global_batch_size": global_batch,
        "skipped": [{"file": str(p), "reason": why} for p, why in train_data.skipped + val_data.skipped],
        "weight_digests": digests, "replicas_identical": len(set(digests)) == 1,
        "run_dir": str(run_dir),
    }  # fmt: skip
    atomic_write_json(run_dir / RESULTS_FILE, result)
    return result
