"""Two runs differ in architecture only when every recipe field is the same."""

from convnet.engine.config import TrainConfig
from convnet.engine.matching import RECIPE_FIELDS, partner_config, recipe_differences


def test_a_partner_has_the_reference_recipe_and_only_its_model_differs():
    reference = TrainConfig(model="lenet5", dataset="mnist", train_subset=600).resolved()
    assert reference.augment is True and reference.weight_decay == 5e-4  # lenet5's own defaults
    partner = partner_config(reference, "mlp")
    assert partner.model == "mlp" and recipe_differences(reference, partner) == []
    # mlp's own defaults would differ from lenet5's in augmentation and weight decay
    own = TrainConfig(model="mlp", dataset="mnist", train_subset=600).resolved()
    assert [d.field for d in recipe_differences(reference, own)] == ["augment", "weight_decay"]


def test_differences_list_headline_fields_first_and_ignore_where_files_go():
    first = TrainConfig(model="lenet5", dataset="mnist", epochs=15, out="a", seed=1).resolved()
    second = partner_config(first, "mlp", augment=False, out="b")
    second.epochs, second.lr = 1, 0.1
    assert [(d.field, d.first, d.second) for d in recipe_differences(first, second)] == [
        ("augment", True, False),
        ("epochs", 15, 1),
        ("lr", 0.05, 0.1),
    ]
    assert {"out", "seed", "model", "device", "test_subset"}.isdisjoint(RECIPE_FIELDS)
    assert {"augment", "epochs", "train_subset", "dataset", "opt", "mixup_alpha"} <= set(
        RECIPE_FIELDS
    )
