"""`MODEL --weights NAME_OR_FILE`: a registered model with torchvision's weights by name (from
the hub cache, with their class names and preprocessing) or a weights file of its own, as
the LoadedModel a run directory would give."""

from __future__ import annotations

import json
from pathlib import Path

from convnet.data.datasets import get_dataset_spec
from convnet.engine.config import dataset_inputs
from convnet.engine.preparations import choose_preparation, trained_preparation
from convnet.engine.run import LoadedModel
from convnet.engine.weight_files import WEIGHT_NAME, hub_weights, read_weights_file
from convnet.engine.weight_fit import channels_in_file, classes_in_file, load_weights
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec, shapes_model
from convnet.models.imagenet import CHALLENGE_ENTRIES, IMAGENET_NORMALIZATION


def _saved_class_names(metadata: dict[str, str], count: int | None) -> tuple[str, ...] | None:
    """The class names a weights file's metadata holds ("class_names", a JSON list, as
    `convnet train` writes them), where they are `count` strings; else None (older files,
    other tools' files, or a damaged entry, which is ignored rather than trusted)."""
    try:
        names = json.loads(metadata.get("class_names", "null"))
    except ValueError:
        return None
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    return tuple(names) if names and (count is None or len(names) == count) else None


def _imagenet_categories(name: str) -> tuple[str, ...]:
    import torchvision

    return tuple(next(iter(torchvision.models.get_model_weights(name))).meta["categories"])


def load_weights_argument(
    name: str,
    weights: str,
    dataset: str | None = None,
    *,
    classes: tuple[str, ...] | None = None,
    data_name: str = "the data",
) -> LoadedModel:
    """`MODEL --weights NAME_OR_FILE`: torchvision weights from the hub cache (with their
    class names and preprocessing), or a local file (safetensors, or a PyTorch file of
    tensors, loaded without running code). `classes` are the class folders of the data it is
    to score (`data_name`), in order: the model is built for as many classes."""
    spec = get_model_spec(name)
    preprocessing: dict = {}
    normalization, input_size = spec.normalization, spec.input_size
    challenge = name in CHALLENGE_ENTRIES
    read = None  # a local file's tensors and metadata
    if WEIGHT_NAME.match(weights) and not Path(weights).exists():
        path, class_names = hub_weights(name, weights)
        if classes is not None and len(classes) != len(class_names):
            raise UserError(
                f"torchvision's {name} {weights} weights classify {len(class_names)} classes, "
                f"but {data_name} has {len(classes)}; they need the 1,000 ImageNet classes."
            )
        import torchvision

        preset = torchvision.models.get_model_weights(name)[weights].transforms()
        input_size = (3, preset.crop_size[0], preset.crop_size[0])
        normalization = (tuple(preset.mean), tuple(preset.std))
        preprocessing = {"resize": preset.resize_size[0], "interpolation": preset.interpolation}
    else:
        path = Path(weights)
        read = read_weights_file(path)  # once: load_weights below takes it
        stored, stored_metadata = read
        probe = shapes_model(name, num_classes=1000 if challenge else 10)
        if classes is not None:
            class_names = (
                _imagenet_categories(name) if challenge and len(classes) == 1000 else tuple(classes)
            )
        else:
            count = classes_in_file(probe, path, stored)
            dataset_names = get_dataset_spec(dataset or "mnist").class_names
            saved_names = _saved_class_names(stored_metadata, count)
            if saved_names is not None and dataset is None:  # written by convnet train
                class_names = saved_names
            elif challenge and count == 1000 and dataset is None:
                class_names = _imagenet_categories(name)
            elif count is None or count == len(dataset_names):
                class_names = dataset_names
            else:
                class_names = tuple(str(index) for index in range(count))
        if classes is None and dataset is not None:  # its channels and normalization
            input_size, normalization = dataset_inputs(spec, dataset)
        elif input_size[0] == 1 and channels_in_file(probe, stored) == 3:
            # a model registered for digits, trained on image folders: RGB, normalised as
            # training on image files normalises it (engine/config.py `model_inputs`)
            input_size, normalization = (3, *input_size[1:]), IMAGENET_NORMALIZATION
    model = get_model(name, num_classes=len(class_names), in_channels=input_size[0])
    try:
        metadata = load_weights(model, path, stored=read)
    except UserError:
        count = classes_in_file(model, path)
        if classes is not None and count is not None and count != len(class_names):
            shown = ", ".join(classes[:5]) + (", …" if len(classes) > 5 else "")
            raise UserError(
                f"The weights file {path} is for {count} classes, but {data_name} has "
                f"{len(classes)} ({shown}); evaluate it on data with the classes it was "
                "trained for."
            ) from None
        raise
    model.eval()
    preparation, why = choose_preparation(
        None,
        channels=input_size[0],
        trained_on=trained_preparation(None, dataset) if dataset is not None else None,
        metadata=metadata,
        named_weights=bool(preprocessing),
    )
    return LoadedModel(
        name,
        spec,
        model,
        class_names,
        photos=preparation == "photo",
        input_size=input_size,
        normalization=normalization,
        preprocessing=preprocessing,
        preparation_reason=why if dataset is None else f"the data set {dataset}",
        weights_path=Path(path),
    )
