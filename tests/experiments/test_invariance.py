"""The invariance experiment's plan of variants, its cache keys and claim 3's seeds."""

import pytest

from convnet.errors import UserError
from convnet.experiments.invariance import InvarianceSettings, cache_key, plan_variants


def test_invariance_plan_and_cache_keys():
    variants = plan_variants(InvarianceSettings(epochs=1, train_subset=100, seeds=1))
    kinds = {(v.model, v.kind) for v in variants}
    assert kinds == {
        ("lenet5", "plain"),
        ("lenet5", "average"),
        ("lenet5", "ablation"),
        ("lenet5", "augmented"),
        ("mlp", "plain"),
        ("mlp", "augmented"),
    }
    plain = next(v for v in variants if v.kind == "plain" and v.model == "lenet5")
    for kind, pooling in (("ablation", "conv"), ("average", "avg")):
        variant = next(v for v in variants if v.kind == kind)
        assert variant.config["model_config"] == {"pooling": pooling}
        assert not variant.config["augment"]
        # The same recipe as the network it is compared with: only the pooling differs.
        differ = {k for k in plain.config if plain.config[k] != variant.config[k]}
        assert differ == {"model_config"}, differ
    keys = {cache_key(v.config) for v in variants}
    assert len(keys) == len(variants)
    config = variants[0].config
    assert cache_key({**config, "out": "elsewhere", "device": "cpu"}) == cache_key(config)
    assert cache_key({**config, "epochs": 2}) != cache_key(config)


def test_every_pooling_variant_is_trained_with_every_seed():
    variants = plan_variants(InvarianceSettings(epochs=1, train_subset=100, seeds=3, seed=5))
    for kind in ("plain", "average", "ablation"):
        seeds = [v.seed for v in variants if v.model == "lenet5" and v.kind == kind]
        assert seeds == [5, 6, 7], (kind, seeds)
        assert [
            v.config["seed"] for v in variants if v.model == "lenet5" and v.kind == kind
        ] == seeds
    # An MLP has no pooling, and augmentation is not claim 3's: one seed each.
    assert [v.seed for v in variants if v.model == "mlp"] == [5, 5]
    assert [v.seed for v in variants if v.kind == "augmented"] == [5, 5]
    firsts = [v.label for v in variants if v.first_seed]
    assert "lenet5" in firsts and "lenet5 · seed 6" in [v.label for v in variants]
    assert len({v.label for v in variants}) == len(variants)
    with pytest.raises(UserError, match="--seeds"):
        plan_variants(InvarianceSettings(seeds=0))
