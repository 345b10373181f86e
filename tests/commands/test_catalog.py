"""The command line's catalog (names its help pages list) agrees with the registries."""

from __future__ import annotations

from convnet.commands import catalog


def test_catalog_names_what_the_registries_hold():
    from convnet.data.distortions import DISTORTIONS
    from convnet.experiments import evolution
    from convnet.experiments.invariance import DEFAULT_SEEDS, VARIANT_KINDS
    from convnet.models import list_models

    copies = {
        "models": catalog.MODEL_NAMES,
        "distortions": catalog.DISTORTION_NAMES,
        "variants": catalog.INVARIANCE_VARIANTS,
        "seeds": catalog.INVARIANCE_SEEDS,
        "evolution models": catalog.EVOLUTION_MODELS,
        "evolution recipe": (
            catalog.EVOLUTION_EPOCHS,
            catalog.EVOLUTION_BATCH_SIZE,
            catalog.EVOLUTION_LR,
            catalog.EVOLUTION_WEIGHT_DECAY,
        ),
    }
    sources = {
        "models": tuple(list_models()),
        "distortions": tuple(DISTORTIONS),
        "variants": VARIANT_KINDS,
        "seeds": DEFAULT_SEEDS,
        "evolution models": evolution.DEFAULT_MODELS,
        "evolution recipe": (
            evolution.DEFAULT_EPOCHS,
            evolution.DEFAULT_BATCH_SIZE,
            evolution.DEFAULT_LR,
            evolution.DEFAULT_WEIGHT_DECAY,
        ),
    }
    assert copies == sources
