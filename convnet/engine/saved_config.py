"""A run's config.json as it is read back: every value checked before anything uses it.

config.json is a file a user may edit, copy or damage. Read unchecked, a bad `model_config`
key or a document nested 100,000 deep ended in a traceback, `test_subset: -3` scored 9,997
images, and a hand-edited batch size made `--resume` cut steps.csv from 7,036 lines to 18.
`parse_saved_config` checks the types (`TrainConfig.from_json`), the ranges
(`TrainConfig.validate`, and the upper bounds below), the nesting, the classes, and the
model's options against its builder, and refuses anything else with one paragraph naming
the file and the value (a UserError, exit status 2).
"""

from __future__ import annotations

import inspect
import json
from dataclasses import replace
from pathlib import Path

import torch

from convnet.engine.config import TrainConfig
from convnet.errors import UserError
from convnet.models import get_model, get_model_spec

# The most any field may hold, where only a lower bound is a flag's (engine/config.py RANGES):
# values far past any real run's, below the sizes where arithmetic on them would overflow
# a tensor's index or a worker pool.
UPPER_BOUNDS = {
    "epochs": 1_000_000,
    "patience": 1_000_000,  # epochs, as "epochs"
    "lr_warmup_epochs": 1_000_000,
    "lr_step_size": 1_000_000,
    "batch_size": 2**20,  # 1,048,576 images in one step: no memory holds more
    "grad_accum_steps": 2**20,  # batches in one optimizer step, as "batch_size"
    "model_ema_steps": 2**31 - 1,
    "image_size": 8192,  # a side of 8,192 pixels: 64 times ImageNet's 224² per image
    "workers": 256,
    "checkpoint_every": 2**31 - 1,
    "train_subset": 2**31 - 1,
    "test_subset": 2**31 - 1,
    "world_size": 65_536,
}
# How deep a JSON value inside config.json may nest (model_config, custom_module): options
# are numbers, strings and short lists; a deeper document is not a configuration.
MAX_DEPTH = 4
# Options the registry passes itself, never through model_config.
BUILDER_OWN = ("num_classes", "in_channels")


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(item) for item in value), default=0)
    return 0


def check_model_options(config: TrainConfig) -> None:
    """model_config's keys are options of the model's builder and build a model with them
    (on the meta device: shapes only, nothing allocated); ValueError naming the option."""
    if config.custom_module is not None or not config.model_config:
        return
    spec = get_model_spec(config.model)
    parameters = inspect.signature(spec.builder).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    known = [name for name in parameters if name not in BUILDER_OWN]
    for key in config.model_config:
        if key in BUILDER_OWN or (not takes_any and key not in parameters):
            options = ", ".join(
                name for name in known if parameters[name].kind.name != "VAR_KEYWORD"
            )
            raise ValueError(
                f'"model_config" has "{key}", which is not an option of {config.model} '
                f"(its options: {options or 'none'})"
            )
    try:
        with torch.device("meta"):
            get_model(config.model, num_classes=2, **config.model_config)
    except NotImplementedError:  # an initialisation the meta device cannot run: not a misfit
        pass
    except (TypeError, ValueError, RuntimeError, AttributeError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f'"model_config" {json.dumps(config.model_config)} does not build {config.model} '
            f"({reason})"
        ) from None


def _check_shapes(config: TrainConfig, document: dict) -> None:
    """What the checks of ranges need to hold before they run: no deep nesting, and a custom
    module described by its input size."""
    for name in ("model_config", "custom_module", "custom_data", "classes", "freeze"):
        if _depth(document.get(name)) > MAX_DEPTH:
            raise ValueError(f'"{name}" nests deeper than {MAX_DEPTH} levels')
    for name in ("custom_module", "custom_data"):
        described = getattr(config, name)
        if described is None:
            continue
        size = described.get("input_size") if isinstance(described, dict) else None
        if not (
            isinstance(size, list)
            and len(size) == 3
            and all(isinstance(n, int) and 1 <= n <= UPPER_BOUNDS["image_size"] for n in size)
        ):
            raise ValueError(f'"{name}" needs "input_size": [channels, height, width]')


def _check(config: TrainConfig) -> None:
    for name, bound in UPPER_BOUNDS.items():
        value = getattr(config, name)
        if value is not None and value > bound:
            raise ValueError(f'"{name}" is {value:,}, more than {bound:,}')
    if config.world_size < 1:
        raise ValueError(f'"world_size" is {config.world_size}, not at least 1')
    if not all(isinstance(name, str) and name for name in config.classes):
        raise ValueError('"classes" must be a list of non-empty names')
    if len(set(config.classes)) != len(config.classes):
        raise ValueError('"classes" names a class twice')
    if config.data is not None and (len(config.classes) < 2 or config.image_size is None):
        raise ValueError('a run on image files needs "classes" (at least 2) and "image_size"')
    if config.dataset is not None:
        from convnet.data.datasets import get_dataset_spec

        get_dataset_spec(config.dataset)
    check_model_options(config)


def parse_saved_config(text: str, path: Path) -> TrainConfig:
    """The configuration in config.json's `text`, every value checked; UserError naming
    `path` and what is wrong otherwise."""
    try:
        document = json.loads(text)
        config = TrainConfig.from_json(text)
        _check_shapes(config, document)
        # the ranges of the flags; not whether TensorBoard is installed here, which matters
        # to training only, not to reading a run
        replace(config, tensorboard=False).validate()
        _check(config)
    except RecursionError:
        reason = "it nests deeper than any configuration"
    except (ValueError, TypeError, KeyError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    except UserError as error:  # a value out of its flag's range, an unknown model or data set
        reason = str(error).strip().rstrip(".")
    else:
        return config
    raise UserError(
        f"{path} is not a valid run configuration ({reason}). Correct it, or start the run "
        "again ('convnet train --config FILE' reads a corrected copy)."
    )
