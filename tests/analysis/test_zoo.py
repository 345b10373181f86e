"""The ImageNet model zoo (convnet/analysis/zoo.py): its entries, their accounting against
torchvision's published figures, each family built small, and the speed measurement."""

from __future__ import annotations

import pytest
import torch

from convnet.analysis.zoo import images_per_second, zoo_names, zoo_row
from convnet.models import get_model, get_model_spec
from convnet.models.imagenet import CHALLENGE_ENTRIES

# Smallest inputs each family takes: five stride-2 stages (32), AlexNet's 11×11 stride 4 (64).


# Each family's ILSVRC classification entry, typed in from the papers (not read from the
# registry): year and top-5 test error in percent. Krizhevsky et al. 2012 Table 2 (5 CNNs);
# Simonyan & Zisserman 2015 Table 7 (ILSVRC submission, 7 nets); Szegedy et al. 2015
# Table 2; He et al. 2016 Table 5.
ILSVRC_ENTRIES = {
    "alexnet": (2012, 16.4),
    "vgg": (2014, 7.3),
    "googlenet": (2014, 6.67),
    "resnet": (2015, 3.57),
}
# docs/models.md: "MACs agree with its GFLOPS (which are multiply-accumulates) to 0.1%".
MACS_TOLERANCE = 0.001

# torchvision's published figures (its weights' documentation) and the lecture's depths.
PUBLISHED = {
    "alexnet": (8, 61_100_840, 0.714),
    "vgg19": (19, 143_667_240, 19.632),
    "googlenet": (22, 6_624_904, 1.498),
    "resnet152": (152, 60_192_808, 11.514),
}


def test_zoo_holds_the_issue_families():
    expected = {"alexnet", "googlenet"}
    expected |= {f"vgg{d}{s}" for d in (11, 13, 16, 19) for s in ("", "_bn")}
    expected |= {f"resnet{d}" for d in (18, 34, 50, 101, 152)}
    assert set(zoo_names()) == expected


# Real weights and arithmetic for one model of each distinct shape; the deeper members of a
# family (the same blocks, more of them) run on the meta device: shapes, no arithmetic.
REAL_FORWARD = {"alexnet", "vgg11", "vgg11_bn", "googlenet", "resnet18", "resnet50"}


@pytest.mark.parametrize("name", zoo_names())
def test_small_construction_forward_and_split(name):
    spec = get_model_spec(name)
    side = spec.quick_input_size[1]
    torch.manual_seed(0)
    with torch.device("cpu" if name in REAL_FORWARD else "meta"):
        model = get_model(name, num_classes=5, in_channels=1).eval()
        images = torch.randn(2, 1, side, side)
    with torch.inference_mode():
        output = model(images)
        split = model.forward_head(model.forward_features(images))
    assert output.shape == split.shape == (2, 5)
    if name in REAL_FORWARD:
        assert torch.isfinite(output).all()
        torch.testing.assert_close(split, output)


@pytest.mark.parametrize("name", zoo_names())
def test_counts_equal_torchvision_published(name):
    import torchvision

    meta = next(iter(torchvision.models.get_model_weights(name))).meta
    row = zoo_row(name)
    assert row.params == meta["num_params"]
    assert abs(row.macs / 1e9 - meta["_ops"]) <= MACS_TOLERANCE * meta["_ops"]
    family = next(family for family in ILSVRC_ENTRIES if name.startswith(family))
    assert (row.year, row.top5_error) == ILSVRC_ENTRIES[family]
    assert CHALLENGE_ENTRIES[name].source and get_model_spec(name).paper


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_depth_params_macs_of_the_lecture_networks(name):
    depth, params, gmacs = PUBLISHED[name]
    row = zoo_row(name)
    assert row.depth == depth
    assert row.params == params
    assert abs(row.macs / 1e9 - gmacs) <= MACS_TOLERANCE * gmacs
    assert row.weight_bytes == 4 * params
    assert row.activation_bytes > 0


def test_images_per_second_measures():
    model = get_model("resnet18", num_classes=10)
    rate, times = images_per_second(model, (3, 32, 32), "bf16", batch_size=2, repeats=2)
    assert rate > 0 and len(times) == 2
