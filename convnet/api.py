"""The Python API for notebooks and scripts: `import convnet`, then

    model = convnet.create_model("lenet5", weights="runs/x/model.safetensors")
    convnet.list_models("resnet*")
    print(convnet.summary(model, (1, 32, 32)))
    result = convnet.fit("lenet5", dataset="mnist", epochs=1, train_subset=2000)
    loaded = convnet.load_run(result["run_dir"])
    scores = convnet.evaluate(loaded, dataset="mnist", test_subset=500)

Every function is a thin layer over the engine the `convnet` command uses (one training loop,
one evaluation, one run directory), so a run written here is a run like any other. torch is
imported inside the functions, so `import convnet` stays light. Mistakes raise
`convnet.errors.UserError` with a one-paragraph message (the command line's exit status 2).
Documented with runnable examples in docs/api.md.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convnet.errors import UserError

if TYPE_CHECKING:
    from torch import nn
    from torch.utils.data import Dataset

    from convnet.analysis.summary import ModelSummary
    from convnet.engine.run import LoadedModel

__all__ = ["create_model", "evaluate", "fit", "list_models", "load_run", "summary"]


def list_models(pattern: str = "*") -> list[str]:
    """The registered model names matching `pattern` (fnmatch wildcards: `*`, `?`, `[...]`,
    as timm's `list_models('resnet*')`), sorted."""
    from convnet.models import list_models as registered

    return fnmatch.filter(registered(), pattern)


def _default_classes(name: str) -> int:
    """1000 for the ImageNet families (their torchvision weights' classes), else 10."""
    from convnet.models.imagenet import CHALLENGE_ENTRIES

    return 1000 if name in CHALLENGE_ENTRIES else 10


def _weights_shape(
    name: str, path: Path, stored: dict, in_channels: int | None, options: dict
) -> tuple[int, int | None]:
    """The class count and input channels a weights file (its tensors `stored`) was saved
    for (`classes_in_file`, `channels_in_file`): the model's default class count when the
    file does not say."""
    from convnet.engine.weight_fit import channels_in_file, classes_in_file
    from convnet.models import shapes_model

    default = _default_classes(name)
    probe = shapes_model(name, num_classes=default, in_channels=in_channels, **options)
    return classes_in_file(probe, path, stored) or default, channels_in_file(probe, stored)


def create_model(
    name: str,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    *,
    in_channels: int | None = None,
    download: bool = False,
    log: Callable[[str], None] = print,
    **options: Any,
) -> nn.Module:
    """A registered model (see `list_models`), in training mode as PyTorch builds it.

    `weights`: a weights file (safetensors, or a PyTorch state_dict, never unpickled) or
    torchvision weights by name (e.g. "IMAGENET1K_V1", read from the torch hub cache; with
    `download=True` fetched there first, its hash checked). `num_classes` defaults to the
    class count of the weights, else 1000 for the ImageNet families and 10 for the others;
    a different count keeps a fresh classifier (fine-tuning, said in one line to `log`).
    `in_channels` defaults to those of the weights' first convolution (3 for lenet5 trained
    on image folders), else the model's own. `options` go to the model's builder (e.g.
    `width` where it has one). UserError for an unknown name or weights that do not fit."""
    from convnet.engine.weight_files import read_weights_file, weights_path
    from convnet.engine.weight_fit import load_weights
    from convnet.models import get_model

    path = weights_path(name, str(weights), download=download) if weights else None
    stored = read_weights_file(path) if path is not None else None  # read once
    if path is not None:
        saved_classes, saved_channels = _weights_shape(name, path, stored[0], in_channels, options)
        num_classes = saved_classes if num_classes is None else num_classes
        in_channels = saved_channels if in_channels is None else in_channels
    elif num_classes is None:
        num_classes = _default_classes(name)
    model = get_model(name, num_classes=num_classes, in_channels=in_channels, **options)
    if path is not None:
        load_weights(model, path, replace_classifier=True, log=log, stored=stored)
    return model


def summary(
    model: nn.Module | str, input_size: tuple[int, ...] | None = None, *, num_classes: int = 10
) -> ModelSummary:
    """Per-layer output shape, parameters, connections, MACs and activation memory, and the
    totals, of any nn.Module (or a registered model by name, built with `num_classes`) for
    one example of `input_size` (C, H, W: no batch dimension; a registered model's default
    is its registry input). str() of the result is the table `convnet summary` prints;
    `.to_dict()` its JSON. UserError when the model cannot take the input."""

    from convnet.analysis.summary import summarize
    from convnet.models import get_model_spec, shapes_model

    name = ""
    if isinstance(model, str):
        name, spec = model, get_model_spec(model)
        input_size = tuple(input_size or spec.input_size)
        model = shapes_model(name, num_classes=num_classes, in_channels=input_size[0])
    elif input_size is None:
        raise UserError("summary() of a module of your own needs its input_size, e.g. (3, 32, 32).")
    try:
        return summarize(model, tuple(input_size), name or type(model).__name__)
    except RuntimeError as error:
        raise UserError(
            f"{name or type(model).__name__} cannot take input of size {tuple(input_size)}: "
            f"{str(error).strip().splitlines()[0]}"
        ) from None


def _native_input_size(dataset: str | None, data_dir: str | None) -> tuple[int, int, int]:
    """A registered data set's own image size (C, H, W), read from its test split."""
    from convnet.data.datasets import load_dataset

    images = load_dataset(dataset or "mnist", "test", Path(data_dir) if data_dir else None).images
    return (1, *images.shape[1:]) if images.dim() == 3 else tuple(images.shape[1:])


def _custom_module(
    module: nn.Module, config_values: dict, input_size: tuple | None, normalization: tuple
) -> dict:
    """`TrainConfig.custom_module` for a user's module: its class, input and normalization."""
    if input_size is None:
        if config_values.get("data"):
            side = config_values.get("image_size") or 224
            input_size = (3, side, side)
        else:
            input_size = _native_input_size(
                config_values.get("dataset"), config_values.get("data_dir")
            )
    kind = type(module)
    return {
        "class": f"{kind.__module__}.{kind.__qualname__}",
        "input_size": [int(size) for size in input_size],
        "normalization": [float(value) for value in normalization],
    }


def fit(
    model: str | nn.Module,
    *,
    dataset: str | None = None,
    data: str | Path | Dataset | tuple[Dataset, Dataset] | None = None,
    out: str | Path | None = None,
    name: str | None = None,
    input_size: tuple[int, int, int] | None = None,
    normalization: tuple[float, float] = (0.0, 1.0),
    threads: int = 0,
    log: Callable[[str], None] = print,
    **options: Any,
) -> dict:
    """Train `model` — a registered name, or an nn.Module of your own — on `dataset` (a
    registered data set, default mnist) or `data`: a folder of class folders, or a
    torch.utils.data.Dataset of your own (split by `val_fraction`) or a pair of them
    (training, held-out) whose items are (image, label) with images as tensors (C, H, W)
    or PIL images of one size. Training goes through the engine's one loop; the return
    value is the results (the JSON of `convnet train`, with "run_dir"). `options` are the
    TrainConfig fields, as the flags of `convnet train`: epochs, batch_size, lr, opt,
    lr_scheduler, mixup_alpha, model_ema, recipe, train_subset, seed, device, ….

    A module of your own is trained in place and saved under `name` (default: its class
    name); it sees images of `input_size` (default: the data set's own, e.g. 1×28×28 for
    MNIST; 3×224×224 for folders) scaled to [0, 1] and normalised as (x − mean) / std with
    `normalization`. Its run directory holds the weights, not the code: load it with
    `load_run(path, module=YourModule())`. `threads`: CPU threads (0: the load-aware
    automatic choice)."""
    from dataclasses import fields

    from convnet.engine.config import TrainConfig
    from convnet.engine.named_recipes import refuse_without_effect, with_recipe
    from convnet.engine.threads import cpu_threads
    from convnet.engine.train import fit as train

    known = {item.name for item in fields(TrainConfig)} - {"model", "custom_module", "custom_data"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise UserError(
            f"fit() has no option {', '.join(unknown)}; it takes {', '.join(sorted(known))}."
        )
    if isinstance(options.get("freeze"), str):  # freeze="features.*": one pattern
        options["freeze"] = [options["freeze"]]
    own_data = data is not None and not isinstance(data, (str, Path))
    folder = None if own_data or data is None else str(data)
    places = {"dataset": dataset, "data": folder, "out": out and str(out)}
    values = {key: value for key, value in {**options, **places}.items() if value is not None}
    values = with_recipe(values)
    refuse_without_effect(options, values)
    source = None
    if own_data:
        source, values["custom_data"] = _dataset_source(
            data,
            values,
            module_norm=(None if isinstance(model, str) else normalization),
            model=model,
        )
    module = None
    if isinstance(model, str):
        values["model"] = model
    else:
        module = model
        values["model"] = name or type(model).__name__
        size = input_size or (values["custom_data"]["input_size"] if own_data else None)
        values["custom_module"] = _custom_module(model, values, size, normalization)
    config = TrainConfig(**values)
    config.validate()  # a bad value is refused before anything is read or written
    with cpu_threads(threads):
        return train(config, module=module, data=source, log=log)


def _dataset_source(data, values: dict, module_norm: tuple | None, model) -> tuple:
    """A DatasetSource of the user's Dataset(s) and its TrainConfig.custom_data: a pair is
    (training, held-out); one Dataset is split by the run's seeded val_fraction."""
    import torch
    from torch.utils.data import Dataset, Subset

    from convnet.data.torch_datasets import DatasetSource
    from convnet.models import get_model_spec

    if isinstance(data, (tuple, list)) and len(data) == 2:
        train, held_out = data
    elif isinstance(data, Dataset):
        count = len(data)
        order = torch.randperm(
            count, generator=torch.Generator().manual_seed(values.get("seed", 0))
        )
        held = max(1, round(count * values.get("val_fraction", 0.2)))
        train, held_out = Subset(data, order[held:].tolist()), Subset(data, order[:held].tolist())
        train.classes = held_out.classes = getattr(data, "classes", None)
    else:
        raise UserError("data= takes a folder, a torch Dataset or a (training, held-out) pair.")
    normalization = module_norm or get_model_spec(model).normalization
    kind = type(data[0] if isinstance(data, (tuple, list)) else data)
    source = DatasetSource(train, held_out, normalization, name=kind.__name__)
    described = {
        "class": f"{kind.__module__}.{kind.__qualname__}",
        "input_size": list(source.input_size),
        "train_images": source.train_count,
        "eval_images": source.eval_count,
    }
    return source, described


def load_run(path: str | Path, module: nn.Module | None = None) -> LoadedModel:
    """A run directory's trained model (on the CPU, in evaluation mode) as a LoadedModel:
    `.model`, `.class_names`, `.input_size`, `.normalization`, `.preprocessing`, `.config`.
    A run of a module of your own needs that module again (`module=`), built as for the run."""
    from convnet.engine.run import Run

    return Run(path).load(module)


def evaluate(
    run_or_model: str | Path | LoadedModel | nn.Module,
    *,
    dataset: str | None = None,
    data: str | Path | Dataset | None = None,
    weights: str | None = None,
    test_subset: int | None = None,
    batch_size: int | None = None,
    data_dir: str | Path | None = None,
    split: str | None = None,
    input_size: tuple[int, int, int] | None = None,
    normalization: tuple[float, float] = (0.0, 1.0),
    device: str = "auto",
    precision: str = "auto",
    threads: int = 0,
) -> dict:
    """The scores of `convnet evaluate` (top-1/top-5 error, loss, per-class accuracy,
    confusions; docs/json.md) of a run directory, a `load_run` result, a registered model
    name with `weights=` (a file or torchvision weights), or an nn.Module of your own (with
    `input_size` and `normalization` as in `fit`), on `dataset` or `data` (default: the
    run's own held-out data, else mnist)."""
    from convnet.data.datasets import get_dataset_spec
    from convnet.engine.device import resolve_device, resolve_precision
    from convnet.engine.evaluate import evaluate as score
    from convnet.engine.run import LoadedModel, Run
    from convnet.engine.threads import cpu_threads
    from convnet.engine.weights_argument import load_weights_argument

    loaded = run_or_model
    if isinstance(run_or_model, (str, Path)) and weights:
        loaded = load_weights_argument(str(run_or_model), weights, dataset)
    elif isinstance(run_or_model, (str, Path)):
        loaded = Run(run_or_model).load()
    elif not isinstance(run_or_model, LoadedModel):
        from convnet.engine.config import TrainConfig

        if isinstance(data, (str, Path)):
            raise UserError(
                "evaluate() of a bare module reads registered data sets or a Dataset of your "
                "own; train it with convnet.fit on the folder and evaluate its run instead."
            )
        size = input_size or _native_input_size(dataset, str(data_dir) if data_dir else None)
        custom = {
            "class": type(run_or_model).__name__,
            "input_size": list(size),
            "normalization": list(normalization),
        }
        spec = TrainConfig(model=type(run_or_model).__name__, custom_module=custom).spec
        loaded = LoadedModel(
            spec.name,
            spec,
            run_or_model.eval(),
            get_dataset_spec(dataset or "mnist").class_names,
            input_size=tuple(size),
            normalization=tuple(normalization),
        )
    if data is not None and not isinstance(data, (str, Path)):  # a Dataset of your own
        from convnet.data.torch_datasets import DatasetSource

        source = DatasetSource(None, data, loaded.normalization, loaded.class_names)
    else:
        source = loaded.evaluation_source(
            dataset,
            str(data) if data else None,
            data_dir=Path(data_dir) if data_dir else None,
            split=split,
            test_subset=test_subset,
            workers=0,
        )
    chosen = resolve_device(device)
    with cpu_threads(threads):
        evaluation = score(
            loaded.model.to(chosen),
            source,
            chosen,
            resolve_precision(precision, chosen),
            batch_size=batch_size,
        )
    return evaluation.result
