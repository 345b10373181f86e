"""Named recipes (convnet/recipes/NAME.json, or a file of that form: every value of a
recipe written out, like the recipe tables in torchvision's docs), laid under the options a
user gives, and the refusal of options given that the resulting configuration would ignore.
Used by `convnet train --recipe` and `convnet.fit(recipe=...)` alike."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

from convnet.engine.config import TrainConfig
from convnet.errors import UserError

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def recipe_names() -> list[str]:
    """The named recipes shipped with convnet (convnet/recipes/NAME.json)."""
    return sorted(path.stem for path in RECIPES.glob("*.json"))


def load_recipe(name: str) -> dict:
    """A recipe: a JSON file of {"description", "source", "values"} whose values are
    TrainConfig fields, every one written out — a shipped one by name, or a file of that
    form. UserError for an unknown name, a damaged file or a value no run can use."""
    path = RECIPES / f"{name}.json" if name in recipe_names() else Path(name).expanduser()
    if not path.is_file():
        raise UserError(
            f"Unknown recipe '{name}': neither a named recipe ({', '.join(recipe_names())}) "
            "nor a recipe file."
        )
    try:
        document = json.loads(path.read_text())
        if not isinstance(document, dict) or not isinstance(document.get("values"), dict):
            raise ValueError('it is not an object with "values", an object of options')
        extra = sorted(set(document) - {"description", "source", "notes", "values"})
        if extra:
            raise ValueError(
                f"{', '.join(extra)}: a recipe holds description, source, notes and values only"
            )
        values = document["values"]
        unknown = sorted(set(values) - {item.name for item in fields(TrainConfig)})
        if unknown:
            verb = "is not an option" if len(unknown) == 1 else "are not options"
            raise ValueError(f"{', '.join(unknown)} {verb} of a run")
        TrainConfig.from_json(json.dumps(values)).validate()
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise UserError(f"The recipe {path} is not usable ({error}).") from None
    return dict(values)


# Options where giving one replaces the recipe's other: the warm-up as a share or in epochs.
ALTERNATIVES = (("warmup_fraction", "lr_warmup_epochs"), ("lr_warmup_epochs", "warmup_fraction"))


def with_recipe(values: dict) -> dict:
    """`values` over the recipe they name (`recipe`), if any: the values given win, also
    over the recipe's alternative to one of them (its warm-up in epochs where a share is
    given; its momentum where AdamW, which has none, is chosen)."""
    if not values.get("recipe"):
        return dict(values)
    recipe = load_recipe(values["recipe"])
    for given, replaced in ALTERNATIVES:
        if values.get(given) is not None:
            recipe.pop(replaced, None)
    if values.get("opt") == "adamw" and values.get("momentum") is None:
        recipe.pop("momentum", None)
    return {**recipe, **values}


def refuse_without_effect(given: set[str] | dict, values: dict) -> None:
    """Refuse options given (`given`: their field names) that the rest of the configuration
    (`values`, recipe and defaults included) would ignore, naming what each needs: a schedule's
    option beside another schedule, the moving average's options without it, an augmentation
    policy beside --no-augment."""
    scheduler = values.get("lr_scheduler") or "cosine"
    augmenting = values.get("augment") is not False
    needs = {
        "lr_milestones": (scheduler == "multistep", "--lr-scheduler multistep"),
        "lr_step_size": (scheduler == "step", "--lr-scheduler step"),
        "lr_gamma": (scheduler in ("step", "multistep"), "--lr-scheduler step or multistep"),
        "lr_min": (scheduler == "cosine", "--lr-scheduler cosine"),
        "model_ema_decay": (bool(values.get("model_ema")), "--model-ema"),
        "model_ema_steps": (bool(values.get("model_ema")), "--model-ema"),
    }
    ignored = [
        f"--{name.replace('_', '-')} (it needs {need})"
        for name, (applies, need) in needs.items()
        if name in given and not applies
    ]
    policies = [
        f"--{name.replace('_', '-')}"
        for name in ("auto_augment", "random_erase")
        if values.get(name) and not augmenting
    ]
    if policies and {"augment", "auto_augment", "random_erase"} & set(given):
        ignored.append(f"{' and '.join(policies)} (augmentation, which --no-augment turns off)")
    if ignored:
        raise UserError(
            f"{'; '.join(ignored)}: no effect in this run. Give what each needs, or leave it out."
        )
