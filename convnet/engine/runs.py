"""Run directories: find what a finished (or half-finished) run left, and evaluate it."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from convnet.data.datasets import ImageDataset, get_dataset_spec, load_dataset
from convnet.data.transforms import to_model_input
from convnet.engine.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_weights
from convnet.engine.device import resolve_device, resolve_precision
from convnet.engine.evaluate import evaluate
from convnet.engine.train import METRICS_FILE, TrainConfig
from convnet.errors import UserError
from convnet.models import ModelSpec, get_model, get_model_spec


@dataclass
class LoadedModel:
    name: str
    spec: ModelSpec
    model: nn.Module
    class_names: tuple[str, ...]
    config: TrainConfig | None = None


def load_run(run_dir: Path) -> LoadedModel:
    """The trained model of a run directory, with its configuration."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"Run directory {run_dir} does not exist.")
    config_path, weights_path = run_dir / CONFIG_FILE, run_dir / WEIGHTS_FILE
    if not config_path.is_file():
        raise UserError(f"{run_dir} is not a run directory: it has no {CONFIG_FILE}.")
    if not weights_path.is_file():
        raise UserError(
            f"{run_dir} has no weights ({WEIGHTS_FILE}): the run did not finish an epoch. "
            f"Continue it with 'convnet train --resume {run_dir}'."
        )
    try:
        config = TrainConfig.from_json(config_path.read_text())
    except (ValueError, TypeError) as error:
        raise UserError(f"{config_path} is not a valid run configuration ({error}).") from None
    return load_model(config.model, weights_path, config=config, dataset=config.dataset)


def load_model(
    name: str, weights: Path, config: TrainConfig | None = None, dataset: str | None = None
) -> LoadedModel:
    """A registered model with weights from a file; class names from the data set."""
    spec = get_model_spec(name)
    class_names = (
        get_dataset_spec(dataset).class_names if dataset else tuple(str(i) for i in range(10))
    )
    model = get_model(name, num_classes=len(class_names), **(config.model_config if config else {}))
    load_weights(model, Path(weights))
    model.eval()
    return LoadedModel(name, spec, model, class_names, config)


def read_history(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    with path.open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


@dataclass
class Evaluation:
    result: dict
    logits: torch.Tensor
    images: torch.Tensor  # model-input images in [0, 1]
    data: ImageDataset


def evaluate_loaded(
    loaded: LoadedModel,
    dataset: str,
    data_dir: Path | None = None,
    device_name: str = "auto",
    precision: str = "auto",
) -> Evaluation:
    """Evaluate a loaded model on a data set's test split."""
    data = load_dataset(dataset, "test", data_dir)
    if len(data.class_names) != len(loaded.class_names):
        raise UserError(
            f"The model has {len(loaded.class_names)} classes but {dataset} has "
            f"{len(data.class_names)}; evaluate it on the data set it was trained for."
        )
    device = resolve_device(device_name)
    model = loaded.model.to(device)
    images = to_model_input(data.images, loaded.spec.input_size)
    result, logits = evaluate(
        model, images, data.labels, data.class_names, loaded.spec.normalization, device,
        resolve_precision(precision, device),
    )  # fmt: skip
    result = {"model": loaded.name, "dataset": dataset, **result,
              "params": sum(p.numel() for p in model.parameters())}  # fmt: skip
    return Evaluation(result, logits, images, data)
