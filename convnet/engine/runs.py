"""Run directories: find what a finished (or half-finished) run left, and evaluate it."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from convnet.data.datasets import ImageDataset, get_dataset_spec, load_dataset
from convnet.data.transforms import to_model_input
from convnet.engine.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_weights, read_state_file
from convnet.engine.device import resolve_device, resolve_precision
from convnet.engine.evaluate import evaluate
from convnet.engine.train import METRICS_FILE, TrainConfig
from convnet.errors import UserError
from convnet.models import ModelSpec, get_model, get_model_spec
from convnet.models.imagenet import CHALLENGE_ENTRIES


@dataclass
class LoadedModel:
    name: str
    spec: ModelSpec
    model: nn.Module
    class_names: tuple[str, ...]
    config: TrainConfig | None = None
    photos: bool = False  # ImageNet weights: inputs are photos, resized and centre-cropped


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


# torchvision weight names look like IMAGENET1K_V1, IMAGENET1K_V2 or DEFAULT.
WEIGHT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def hub_weights(name: str, weights_name: str) -> tuple[Path, tuple[str, ...]]:
    """The torch hub cache file of torchvision's `weights_name` for model `name`, and the
    weights' class names. Never downloads: a file not in the cache is a UserError."""
    import torchvision

    if name not in CHALLENGE_ENTRIES:
        raise UserError(
            f"{name} has no torchvision weights; '{weights_name}' names torchvision weights. "
            "Give a weights file instead (--weights FILE)."
        )
    enum = torchvision.models.get_model_weights(name)
    if weights_name not in enum.__members__:
        raise UserError(
            f"torchvision has no weights '{weights_name}' for {name}; it has "
            f"{', '.join(enum.__members__)}."
        )
    weights = enum[weights_name]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not path.is_file():
        raise UserError(
            f"The {name} weights {weights_name} are not in the torch hub cache, and convnet never "
            f"downloads. Fetch {weights.url} where you have internet access and put the file at "
            f"{path} (the hub cache is $TORCH_HOME/hub/checkpoints, by default "
            "~/.cache/torch/hub/checkpoints), or pass a local file with --weights FILE."
        )
    return path, tuple(weights.meta["categories"])


def _classes_in_file(name: str, path: Path) -> int | None:
    """How many classes an ImageNet-family weights file's classifier (its last fully
    connected layer) outputs; None for other families, whose class count is the data set's."""
    if name not in CHALLENGE_ENTRIES:
        return None
    with torch.device("meta"):  # only the layer names are needed: allocate nothing
        model = get_model(name)
    last = [key for key, module in model.named_modules() if isinstance(module, nn.Linear)]
    tensors, _ = read_state_file(path)
    weight = tensors.get(f"{last[-1]}.weight")
    return int(weight.shape[0]) if weight is not None and weight.dim() == 2 else None


def load_weights_argument(name: str, weights: str, dataset: str | None = None) -> LoadedModel:
    """`--weights NAME_OR_FILE`: torchvision weights from the hub cache, or a local file
    (safetensors or a plain-tensor PyTorch file, loaded without running code). ImageNet
    class names come from torchvision's weight metadata."""
    spec = get_model_spec(name)
    if WEIGHT_NAME.match(weights) and not Path(weights).exists():
        path, class_names = hub_weights(name, weights)
    else:
        path = Path(weights)
        if not path.is_file():
            raise UserError(f"Weights file {path} does not exist.")
        dataset_names = get_dataset_spec(dataset or "mnist").class_names
        count = _classes_in_file(name, path)
        if name in CHALLENGE_ENTRIES and count == 1000 and dataset is None:
            import torchvision

            enum = torchvision.models.get_model_weights(name)
            class_names = tuple(next(iter(enum)).meta["categories"])
        elif count is None or count == len(dataset_names):
            class_names = dataset_names
        else:
            class_names = tuple(str(index) for index in range(count))
    model = get_model(name, num_classes=len(class_names))
    load_weights(model, path)
    model.eval()
    photos = len(class_names) == 1000 and name in CHALLENGE_ENTRIES
    return LoadedModel(name, spec, model, class_names, photos=photos)


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
