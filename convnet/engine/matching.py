"""Whether two runs differ in their architecture only: the same data, the same augmentation,
the same epochs and the same recipe.

A comparison of a CNN with an ordinary network credits the architecture with every
difference between the two runs; a CNN trained with augmentation for 15 epochs against an
ordinary network trained for one epoch without it credits convolution with what
augmentation and training time did. The web page (`convnet serve`) and the lecture's
experiments pair their networks with `partner_config` and say whether a pair matches with
`recipe_differences`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from convnet.engine.config import TrainConfig

# TrainConfig fields that are not the recipe: which network, where files go, how and where
# it runs, what is only scored, and the seed (another draw of the same recipe). Every other
# field — data, augmentation, epochs, batch, optimizer, schedule, regularization, initial
# weights — is compared, so a field added to TrainConfig later is compared unless named here.
NOT_RECIPE = frozenset(
    {
        "model",
        "model_config",
        "custom_module",
        "weights",  # another model's weights would not fit; a partner starts from scratch
        "recipe",  # a name: the values it set are compared one by one
        "data_dir",
        "out",
        "device",
        "precision",
        "backend",
        "workers",
        "world_size",
        "checkpoint_every",
        "tensorboard",
        "test_subset",
        "classes",
        "seed",
    }
)
RECIPE_FIELDS = tuple(item.name for item in fields(TrainConfig) if item.name not in NOT_RECIPE)
# The fields a reader checks first, in this order (the page names them).
HEADLINE_FIELDS = ("dataset", "train_subset", "augment", "epochs")


@dataclass(frozen=True)
class Difference:
    """One recipe field on which two runs differ."""

    field: str
    first: object
    second: object

    def to_dict(self) -> dict:
        return asdict(self)


def recipe_differences(first: TrainConfig, second: TrainConfig) -> list[Difference]:
    """The recipe fields on which two resolved configurations differ, headline fields first."""
    order = HEADLINE_FIELDS + tuple(name for name in RECIPE_FIELDS if name not in HEADLINE_FIELDS)
    return [
        Difference(name, getattr(first, name), getattr(second, name))
        for name in order
        if getattr(first, name) != getattr(second, name)
    ]


def recipe_of(config: TrainConfig) -> dict:
    """The recipe of a configuration: the fields a partner copies (for /api/models and JSON)."""
    return {name: getattr(config, name) for name in RECIPE_FIELDS}


def partner_config(
    reference: TrainConfig, model: str, augment: bool | None = None, out: str | None = None
) -> TrainConfig:
    """`model` trained with `reference`'s recipe — its data, epochs, batch, optimizer,
    schedule and regularization — with augmentation on or off where `augment` says, into
    `out`. Its seed and scored test images are the reference's too."""
    return replace(
        reference,
        model=model,
        model_config={},
        custom_module=None,
        weights=None,
        recipe=None,
        augment=reference.augment if augment is None else augment,
        out=out,
    ).resolved()
