"""The networks the web page serves, where each came from, how each was trained, and whether
the pair shown differs in architecture only (convnet.engine.matching).

Up to four networks are served: the CNN and the ordinary network, each trained with and
without augmentation where such runs exist. One CNN and one ordinary network answer each
request — the default pair, or the pair the page's switches pick (`ServedModels.pick`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from convnet.data.datasets import get_dataset_spec
from convnet.engine.config import TrainConfig
from convnet.engine.matching import Difference, recipe_differences
from convnet.engine.run import LoadedModel
from convnet.i18n import number, percent, text

if TYPE_CHECKING:
    from convnet.engine.int8 import Int8Model

CNN, ORDINARY = "cnn", "ordinary"
DEFAULT_MODELS = {CNN: "lenet5", ORDINARY: "mlp"}
ROLE_TITLES = {CNN: "CNN", ORDINARY: "ordinary network"}
QUICK_EPOCHS = 1
# The largest test error of a network the page calls trained: above it a network does worse
# than k-nearest neighbours on raw pixels (5.0% in LeCun et al. 1998, Fig. 9); the server's
# own one-epoch runs reach 1.5–1.8% (lenet5) and 3.2–3.3% (mlp).
MAX_SERVED_ERROR = 0.05
GIVEN, BEST, TRAINED, MATCHED, NOTED = "given", "best", "trained", "matched", "noted"
# The recipe fields the page shows for each network, and the catalog key of each one's name.
SHOWN_RECIPE = ("dataset", "train_images", "augment", "epochs")
DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}  # as their authors write them


@dataclass(frozen=True)
class Origin:
    """Where a served run came from: given with --run, the best of the runs found (of those
    matching the reference's recipe, for a partner), trained when the server started
    (after finding `runs_found` runs, none good enough), or trained to match a reference."""

    chosen: str
    run: str
    runs_found: int = 0
    best_found_error: float | None = None  # the best run found, when none was good enough
    training_seconds: float | None = None
    partner_of: str | None = None  # the run whose recipe this one was chosen or trained to match

    def key(self) -> str:
        """The catalog key of the sentence that tells this origin."""
        if self.chosen == BEST:
            if self.partner_of:
                return "page.origin.best_matching"
            return "page.origin.best_only" if self.runs_found == 1 else "page.origin.best"
        if self.chosen == TRAINED:
            return "page.origin.trained_unsuitable" if self.runs_found else "page.origin.trained"
        if self.chosen == MATCHED:
            return "page.origin.matched"
        return "page.origin.noted" if self.chosen == NOTED else "page.origin.given"


@dataclass
class ServedModel:
    """A loaded network, its role on the page, where it came from, and its test error; with
    `int8` (convnet.serve.quantized), its quantized form, which gives the answers, while the
    fp32 model still gives every inside view."""

    role: str
    loaded: LoadedModel
    origin: Origin | str  # a str: a note, for tools that build a server by hand
    test_error: float | None = None
    test_images: int | None = None
    int8: Int8Model | None = None

    def __post_init__(self) -> None:
        if isinstance(self.origin, str):
            self.origin = Origin(NOTED, self.origin)

    @property
    def augment(self) -> bool | None:
        """Whether it was trained with augmentation (None: no configuration recorded)."""
        return self.loaded.config.augment if self.loaded.config else None

    @property
    def precision(self) -> str:
        """What computes its answers: "int8" (ONNX Runtime) or "fp32" (PyTorch)."""
        return "fp32" if self.int8 is None else "int8"

    @property
    def undertrained(self) -> bool:
        """Above MAX_SERVED_ERROR (or of unknown error): its verdicts are not meaningful."""
        return self.test_error is None or self.test_error > MAX_SERVED_ERROR

    def recipe(self) -> dict:
        """What the page shows of its training: data set, images, augmentation, epochs."""
        return shown_recipe(self.loaded.config)

    def warning(self, lang: str = "en") -> str:
        """Why this network's readings are not meaningful (for an undertrained one)."""
        known = self.test_error is not None
        return text(
            lang,
            "page.warning.undertrained" if known else "page.warning.no_error",
            role=text(lang, f"page.role.{self.role}"),
            model=self.loaded.name,
            limit=percent(MAX_SERVED_ERROR, lang, 0),
            error=percent(self.test_error, lang, 2) if known else "",
        )

    def origin_sentence(self, lang: str = "en") -> str:
        """The page's sentence about where the model came from (the server logs it too)."""
        config, origin = self.loaded.config, self.origin
        images = config.train_subset if config and config.train_subset else None
        return text(
            lang,
            origin.key(),
            model=self.loaded.name,
            run=origin.run,
            partner=origin.partner_of or "",
            count=number(origin.runs_found, lang),
            best=percent(origin.best_found_error or 0, lang, 2),
            limit=percent(MAX_SERVED_ERROR, lang, 0),
            epochs=number(config.epochs if config else QUICK_EPOCHS, lang),
            images=text(lang, "page.origin.some_images", count=number(images, lang))
            if images
            else text(lang, "page.origin.all_images"),
            seconds=number(origin.training_seconds or 0, lang, 1),
        )

    def describe(self, lang: str = "en") -> dict:
        """What /api/models says of this network; the two sentences are in `lang`."""
        config = self.loaded.config
        return {
            "role": self.role,
            "name": self.loaded.name,
            "description": self.loaded.spec.description,
            "params": sum(p.numel() for p in self.loaded.model.parameters()),
            "test_error": self.test_error,
            "test_images": self.test_images,
            "max_error": MAX_SERVED_ERROR,
            "undertrained": self.undertrained,
            "chosen": self.origin.chosen,
            "run": self.origin.run,
            "runs_found": self.origin.runs_found,
            "best_found_error": self.origin.best_found_error,
            "training_seconds": self.origin.training_seconds,
            "partner_of": self.origin.partner_of,
            "origin": self.origin_sentence(lang),
            "warning": self.warning(lang) if self.undertrained else None,
            "epochs": config.epochs if config else None,
            "augment": self.augment,
            "recipe": self.recipe(),  # with its training images (the subset, or all)
            "recipe_text": recipe_sentence(self.recipe(), lang),
            "precision": self.precision,
            # how it was calibrated and how its top-1 agreed with fp32 when it was made
            "int8": None if self.int8 is None else self.int8.note,
        }


def shown_recipe(config: TrainConfig | None) -> dict:
    """What the page shows of a run's training: data set, training images each epoch,
    augmentation, epochs (None where no configuration was recorded)."""
    if config is None:
        return dict.fromkeys(SHOWN_RECIPE)
    images = config.train_subset
    if not images and config.dataset:
        images = get_dataset_spec(config.dataset).split_sizes.get("train")
    return {
        "dataset": config.dataset,
        "train_images": images,
        "augment": config.augment,
        "epochs": config.epochs,
    }


def _written(name: str, value: object, lang: str) -> str:
    """A recipe value as the page writes it: on/off, grouped numbers, the rest as it is."""
    if isinstance(value, bool):
        return text(lang, f"page.recipe.{'on' if value else 'off'}")
    if isinstance(value, int):
        return number(value, lang)
    if name == "dataset":
        return DATASET_TITLES.get(value, value)
    if name == "train_subset" and value is None:
        return text(lang, "page.origin.all_images")
    return "—" if value is None else str(value)


def recipe_sentence(recipe: dict, lang: str = "en") -> str:
    """ "MNIST, 60,000 training images, augmentation on, 15 epochs" in `lang`."""
    written = {name: _written(name, recipe[name], lang) for name in SHOWN_RECIPE}
    one = recipe["epochs"] == 1
    written["epochs"] = text(
        lang, f"page.recipe.{'epoch' if one else 'epochs'}", count=written["epochs"]
    )
    return text(lang, "page.recipe.summary", **written)


def difference_text(difference: Difference, lang: str = "en") -> str:
    """ "augmentation: on (CNN) / off (ordinary network)" in `lang`."""
    key = f"page.recipe.field.{difference.field}"
    name = text(lang, key)
    return text(
        lang,
        "page.pair.difference",
        field=difference.field if name == key else name,
        cnn=_written(difference.field, difference.first, lang),
        ordinary=_written(difference.field, difference.second, lang),
    )


@dataclass
class ServedModels:
    """The pair that answers (cnn, ordinary) and every network served, by (role, augment)."""

    cnn: ServedModel
    ordinary: ServedModel
    networks: dict = field(default_factory=dict)  # (role, augment) -> ServedModel
    # (Wanted, Unfinished): networks whose training at serve start passed its time budget
    unfinished: list = field(default_factory=list)

    def __post_init__(self) -> None:
        for served in (self.cnn, self.ordinary):
            self.networks.setdefault((served.role, served.augment), served)

    def all(self) -> list[ServedModel]:
        return [self.cnn, self.ordinary]

    def choices(self) -> dict[str, list[bool]]:
        """Per role, the augmentation settings a network is served for (True first)."""
        found: dict[str, list[bool]] = {CNN: [], ORDINARY: []}
        for role, augment in self.networks:
            if augment is not None and augment not in found[role]:
                found[role].append(augment)
        return {role: sorted(values, reverse=True) for role, values in found.items()}

    def pick(self, cnn: bool | None = None, ordinary: bool | None = None) -> ServedModels:
        """The pair with the CNN and the ordinary network trained with (True) or without
        (False) augmentation; None keeps the default's. KeyError for one not served."""
        chosen = {
            role: default if wanted is None else self.networks[(role, wanted)]
            for role, wanted, default in ((CNN, cnn, self.cnn), (ORDINARY, ordinary, self.ordinary))
        }
        return replace(self, cnn=chosen[CNN], ordinary=chosen[ORDINARY])

    def differences(self) -> list[Difference] | None:
        """How the pair's recipes differ ([] for a fair pair; None: a recipe is unknown)."""
        first, second = self.cnn.loaded.config, self.ordinary.loaded.config
        if first is None or second is None:
            return None
        return recipe_differences(first, second)

    def pairing(self, lang: str = "en") -> dict:
        """Whether the pair differs in architecture only, the differences, and a sentence."""
        differences = self.differences()
        matched = differences == []
        if differences is None:
            sentence = text(lang, "page.pair.unknown")
        elif matched:
            sentence = text(
                lang, "page.pair.matched", recipe=recipe_sentence(self.cnn.recipe(), lang)
            )
        else:
            sentence = text(
                lang,
                "page.pair.unmatched",
                differences="; ".join(difference_text(item, lang) for item in differences),
            )
        return {
            "matched": matched,
            "differences": [
                {"field": d.field, CNN: d.first, ORDINARY: d.second} for d in differences or []
            ],
            "sentence": sentence,
            "unfinished": [
                self._unfinished(wanted, stopped, lang) for wanted, stopped in self.unfinished
            ],
        }

    @staticmethod
    def _unfinished(wanted, stopped, lang: str) -> dict:
        """A network not trained for lack of time, and how to finish it, in `lang`."""
        how = "same" if wanted.augment is None else "with" if wanted.augment else "without"
        role = text(lang, f"page.unfinished.{how}", role=text(lang, f"page.role.{wanted.role}"))
        return {
            "role": wanted.role,
            "augment": wanted.augment,
            "run": str(stopped.run),
            "epochs_done": stopped.epochs_done,
            "epochs": stopped.epochs,
            "predicted_seconds": round(stopped.predicted_seconds, 1),
            "command": stopped.resume_command(),
            "sentence": text(
                lang,
                "page.unfinished",
                role=role,
                done=number(stopped.epochs_done, lang),
                epochs=number(stopped.epochs, lang),
                minutes=number(stopped.predicted_seconds / 60, lang, 1),
                command=stopped.resume_command(),
            ),
        }
