"""The invariance experiment's plan of variants and its cache keys."""

import pytest

from convnet.experiments.invariance import (
    ABLATION_LR_SCALE,
    InvarianceSettings,
    cache_key,
    plan_variants,
)


def test_invariance_plan_and_cache_keys():
    variants = plan_variants(InvarianceSettings(epochs=1, train_subset=100))
    kinds = {(v.model, v.kind) for v in variants}
    assert kinds == {
        ("lenet5", "plain"),
        ("lenet5", "ablation"),
        ("lenet5", "augmented"),
        ("mlp", "plain"),
        ("mlp", "augmented"),
    }
    ablation = next(v for v in variants if v.kind == "ablation")
    assert ablation.config["model_config"] == {"pooling": "conv"} and not ablation.config["augment"]
    plain = next(v for v in variants if v.kind == "plain" and v.model == "lenet5")
    assert ablation.config["lr"] == pytest.approx(ABLATION_LR_SCALE * plain.config["lr"])
    keys = {cache_key(v.config) for v in variants}
    assert len(keys) == len(variants)
    config = variants[0].config
    assert cache_key({**config, "out": "elsewhere", "device": "cpu"}) == cache_key(config)
    assert cache_key({**config, "epochs": 2}) != cache_key(config)
