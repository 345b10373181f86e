"""Which preparation a model's image files get: as photos or as digits (convnet/data/
preparation.py), decided by the model and what it was trained on, never guessed from its
class count.

In order: `--preparation` when given; what a run was trained on (image files and photo data
sets such as CIFAR-10 are photos, MNIST-like data sets digits); the weights file's own
metadata (training writes it, "preparation": "photo" or "digit"); torchvision's weights
(photos); else the model's input channels: a 3-channel network takes photos, a 1-channel
network digits. `predict resnet18 --weights FILE` with a network fine-tuned to 5 classes used
to prepare photos as digits (grey, ink box, 28×28): a plain photo was refused as blank, a
textured one answered wrongly.
"""

from __future__ import annotations

from convnet.errors import UserError

PREPARATIONS = ("photo", "digit")
PREPARATION_HELP = (
    "how image files are prepared: photo (resized, centre-cropped) or digit (as MNIST was "
    "made); default: what the model was trained on, else photo for a 3-channel model and "
    "digit for a 1-channel one"
)


def trained_preparation(
    data: str | None, dataset: str | None, custom_data: dict | None = None
) -> str | None:
    """The preparation of a run's training data: image files are photos; a registered data
    set's images are photos or digits as its registry entry says; a Dataset of the user's
    own (`custom_data`) says nothing of its images' origin (None)."""
    if custom_data is not None:
        return None
    if data is not None:
        return "photo"
    from convnet.data.datasets import get_dataset_spec

    return "photo" if get_dataset_spec(dataset or "mnist").photos else "digit"


def choose_preparation(
    requested: str | None,
    *,
    channels: int,
    trained_on: str | None = None,
    metadata: dict | None = None,
    named_weights: bool = False,
) -> tuple[str, str]:
    """(preparation, why) for a model of `channels` input channels: `requested` (the flag),
    `trained_on` (a run's own), the weights' `metadata`, torchvision's `named_weights`, or
    the channels."""
    if requested is not None:
        if requested not in PREPARATIONS:
            raise UserError(f"--preparation must be photo or digit, not {requested}.")
        return requested, f"--preparation {requested}"
    if trained_on is not None:
        return trained_on, "the run's training data"
    stored = (metadata or {}).get("preparation")
    if stored in PREPARATIONS:
        return stored, "the weights' metadata"
    if named_weights:
        return "photo", "torchvision's weights"
    if channels == 3:
        return "photo", "the model takes 3-channel inputs"
    return "digit", f"the model takes {channels}-channel inputs"
