"""The ImageNet families built by torchvision: its state-dict keys, and the ILSVRC history."""

from __future__ import annotations

from convnet.models import get_model
from convnet.models.imagenet import HUMAN_TOP5_ERROR, ILSVRC_WINNERS


def test_state_dict_keys_are_torchvisions():
    import torchvision

    ours = get_model("resnet18", num_classes=1000).state_dict()
    theirs = torchvision.models.resnet18().state_dict()
    assert list(ours) == list(theirs)
    assert all(ours[key].shape == theirs[key].shape for key in ours)


def test_history_is_the_lectures():
    assert [(w.year, w.top5_error) for w in ILSVRC_WINNERS] == [
        (2010, 28.2),
        (2011, 25.8),
        (2012, 16.4),
        (2013, 11.7),
        (2014, 6.7),
        (2015, 3.57),
        (2016, 2.99),
        (2017, 2.25),
    ]
    assert HUMAN_TOP5_ERROR == 5.1
    from convnet.report.zoo_chart import bar_label

    labels = {w.network: bar_label(w) for w in ILSVRC_WINNERS}
    assert labels["AlexNet"] == "AlexNet\n8 layers"
    assert labels["ResNet"] == "ResNet\n152 layers"
