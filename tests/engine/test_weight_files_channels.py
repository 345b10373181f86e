"""Weights for grey images start a colour model and the other way round (timm's
adapt_input_conv): the first convolution's kernels summed or repeated, said in one line."""

from __future__ import annotations

import pytest
import torch

from convnet.engine.checkpoint import save_weights
from convnet.engine.weight_fit import load_weights
from convnet.errors import UserError
from convnet.models import get_model


@pytest.mark.parametrize("source, target", [(1, 3), (3, 1)])
def test_the_first_convolution_is_adapted_between_grey_and_colour(source, target, tmp_path):
    torch.manual_seed(0)
    grey_or_colour = get_model("lenet5", in_channels=source)
    path = tmp_path / "weights.safetensors"
    save_weights(path, grey_or_colour)
    model, said = get_model("lenet5", in_channels=target), []
    load_weights(model, path, adapt_channels=True, log=said.append)
    kernel = grey_or_colour.state_dict()["features.c1.weight"]
    expected = kernel.repeat(1, 3, 1, 1) / 3 if target == 3 else kernel.sum(1, keepdim=True)
    assert torch.equal(model.state_dict()["features.c1.weight"], expected)
    assert len(said) == 1 and f"from {source} to {target} input channel" in said[0]
    # a grey image through the adapted colour model gives the grey model's feature maps
    if target == 3:
        grey = torch.rand(2, 1, 32, 32)
        first = grey_or_colour.features.c1(grey)
        assert torch.allclose(model.features.c1(grey.expand(-1, 3, -1, -1)), first, atol=1e-6)


def test_without_adapting_other_channels_are_still_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_weights(path, get_model("lenet5", in_channels=1))
    with pytest.raises(UserError, match="does not fit"):
        load_weights(get_model("lenet5", in_channels=3), path)
