"""A model loaded for inference (`LoadedModel`): its class names, input size,
normalization and image preparation, and the held-out data it is scored on. Made by
`Run.load` (engine/run.py) and `convnet.engine.weights_argument` for bare weights."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from convnet.data.datasets import get_dataset_spec
from convnet.data.folder_source import FolderSource
from convnet.data.shard_manifest import is_shard_data
from convnet.data.sources import DataSource, TensorSource
from convnet.engine.config import TrainConfig
from convnet.engine.preparations import choose_preparation
from convnet.errors import UserError
from convnet.models import ModelSpec
from convnet.wording import counted


@dataclass
class LoadedModel:
    """A model ready for inference, with what it needs to read an image: its class names, its
    input size and normalization, and whether its inputs are photos (resized and
    centre-cropped) or digits (prepared as MNIST was), and why (engine/preparations.py)."""

    name: str
    spec: ModelSpec
    model: nn.Module
    class_names: tuple[str, ...]
    config: TrainConfig | None = None
    photos: bool = False
    input_size: tuple[int, int, int] = (1, 32, 32)
    normalization: tuple = (0.0, 1.0)
    preprocessing: dict = field(default_factory=dict)  # photos: resize, interpolation
    preparation_reason: str = ""  # why `photos` is what it is (engine/preparations.py)
    weights_path: Path | None = None  # the file its weights came from
    unfinished: str | None = None  # a run's note that its training stopped early (Run.load)

    @property
    def preparation(self) -> str:
        """How its image files are prepared: "photo" or "digit"."""
        return "photo" if self.photos else "digit"

    @property
    def preparation_note(self) -> str:
        """The line `predict`, `explain` and `evaluate` on image files print: which
        preparation, and why."""
        return f"Prepared the images as {self.preparation}s ({self.preparation_reason})."

    def prepare_as(self, requested: str | None) -> None:
        """`--preparation photo|digit` over what the model was trained with, when given."""
        if requested is not None:
            preparation, self.preparation_reason = choose_preparation(requested, channels=0)
            self.photos = preparation == "photo"

    def evaluation_source(
        self,
        dataset: str | None = None,
        data: str | None = None,
        *,
        data_dir: Path | None = None,
        split: str | None = None,
        workers: int = 2,
        strict: bool = False,
        ground_truth: str | None = None,
        val_fraction: float | None = None,
        seed: int | None = None,
        test_subset: int | None = None,
    ) -> DataSource:
        """The held-out data this model is scored on: `dataset` or `data` where given, else
        the data it was trained on. Class folders are matched to its classes by name; a
        folder of class folders that is not its own training data is scored whole."""
        config = self.config
        if dataset is None and data is None:
            if config is not None and config.custom_data is not None:
                raise UserError(
                    f"This run trained on a Dataset of your own ({config.custom_data['class']}), "
                    "which its run directory does not hold: evaluate it with "
                    "convnet.evaluate(run, data=dataset)."
                )
            if config is None:
                dataset = "mnist"
            else:
                dataset, data = config.dataset, config.data
                test_subset = test_subset or config.test_subset
        if data is None:
            spec = get_dataset_spec(dataset)
            if len(spec.class_names) != len(self.class_names):
                raise UserError(
                    f"The model has {len(self.class_names)} classes but {dataset} has "
                    f"{len(spec.class_names)}; evaluate it on the data set it was trained for."
                )
            trained_on = config.dataset if config is not None and config.data is None else None
            if trained_on and get_dataset_spec(trained_on).channels != spec.channels:
                raise UserError(
                    f"The model was trained on {trained_on}, images of "
                    f"{counted(get_dataset_spec(trained_on).channels, 'channel')}, but {dataset} has "
                    f"{spec.channels}; evaluate it on the data set it was trained for."
                )
            if config is not None and tuple(self.class_names) != tuple(spec.class_names):
                raise UserError(
                    f"The model's classes are {_few(self.class_names)}, but {dataset}'s are "
                    f"{_few(spec.class_names)}: its answers would be scored against labels "
                    "that name other things. Evaluate it on the data set it was trained for."
                )
            return TensorSource.from_dataset(
                dataset,
                self.input_size,
                self.normalization,
                data_dir=data_dir,
                train=False,
                test_subset=test_subset,
            )
        own = config is not None and config.data is not None and _same_folder(config.data, data)
        if split is None:
            split = "val" if own else "all"
        # A run's classes are matched to folders by name; bare weights (MODEL --weights W)
        # know no folder names, so their outputs follow the folders' sorted order.
        images = dict(
            classes=self.class_names if config is not None else None,
            train=False,
            eval_split=split,
            workers=workers,
            strict=strict,
            resize=self.preprocessing.get("resize"),
            interpolation=self.preprocessing.get("interpolation"),
            test_subset=test_subset,
            digits=not self.photos,
        )
        if is_shard_data(data):
            from convnet.data.shard_source import ShardSource

            source = ShardSource(data, self.input_size, self.normalization, **images)
        else:
            source = FolderSource(
                data,
                self.input_size,
                self.normalization,
                ground_truth=ground_truth,
                val_fraction=val_fraction or (config.val_fraction if config else 0.2),
                seed=seed if seed is not None else (config.seed if config else 0),
                **images,
            )
        if config is None:
            if len(source.class_names) != len(self.class_names):
                raise UserError(
                    f"The model has {len(self.class_names)} classes but {data} has "
                    f"{len(source.class_names)}; evaluate it on data with its classes."
                )
            source.class_names = self.class_names  # the weights' own names (ImageNet's)
        return source


def _few(names) -> str:
    """The first three class names and how many there are: "0, 1, 2, … (10)"."""
    return ", ".join(map(str, names[:3])) + (f", … ({len(names)})" if len(names) > 3 else "")


def _same_folder(first: str, second: str) -> bool:
    try:
        return Path(first).expanduser().resolve() == Path(second).expanduser().resolve()
    except OSError:
        return False
