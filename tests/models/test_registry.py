"""Every registered model, each test building its own: shape with a non-default class count,
gradients, finiteness, and the features/head split. A model above the real-weights budget
(tests/helpers/models.py: the VGGs) is built on the meta device, where its shapes and its
backward graph are checked but no values."""

import pytest
import torch

from convnet.errors import UserError
from convnet.models import get_model, get_model_spec, list_models
from convnet.models.registry import FeaturesThenHead
from tests.helpers.models import build, computes, device_of


@pytest.mark.parametrize("name", list_models())
def test_output_shape_with_other_class_count(name):
    spec = get_model_spec(name)
    model = build(name)
    output = model(torch.randn(3, *spec.quick_input_size, device=device_of(model)))
    assert output.shape == (3, 7)
    if computes(model):  # values need real weights (above the budget: the shape only)
        assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_receives_a_gradient(name):
    """Every parameter is in the backward graph (on the meta device too), and with real
    weights every gradient is finite and not zero."""
    spec = get_model_spec(name)
    model = build(name).train()
    model.zero_grad(set_to_none=True)
    device = device_of(model)
    images = torch.randn(4, *spec.quick_input_size, device=device)
    loss = torch.nn.functional.cross_entropy(model(images), torch.arange(4, device=device))
    loss.backward()
    names, parameters = zip(*model.named_parameters(), strict=True)
    missing = [n for n, p in zip(names, parameters, strict=True) if p.grad is None]
    assert not missing, missing
    if computes(model):
        norms = torch.stack(torch._foreach_norm([p.grad for p in parameters]))  # one pass
        bad = [
            n for n, norm in zip(names, norms.tolist(), strict=True) if not 0 < norm < float("inf")
        ]
        assert not bad, bad
    model.zero_grad(set_to_none=True)  # the gradients' memory, given back at once


def forward_without_the_split(
    model: torch.nn.Module, images: torch.Tensor
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The features and the output computed without forward_features / forward_head.

    Our models' `forward` is defined as forward_head(forward_features(x)), so comparing the
    split with it compares a thing with itself: here they run their `features` children, then
    their `head` children, one by one (as the web page's feature maps do). The torchvision
    families keep torchvision's own forward (not overridden), which gives the output."""
    if isinstance(model, FeaturesThenHead):
        for module in model.features.children():
            images = module(images)
        features = images
        for module in model.head.children():
            images = module(images)
        return features, images
    assert "forward" not in type(model).__dict__, "the wrapper overrides torchvision's forward"
    return None, model(images)


@pytest.mark.parametrize("name", list_models())
def test_features_then_head_is_the_whole_network(name):
    spec = get_model_spec(name)
    model = build(name).eval()
    images = torch.randn(2, *spec.quick_input_size, device=device_of(model))
    with torch.no_grad():
        features = model.forward_features(images)
        split = model.forward_head(features)
        reference_features, reference = forward_without_the_split(model, images)
    assert split.shape == (2, 7)
    if not computes(model):  # on the meta device any two tensors of one shape compare equal
        return
    # The same operations in the same order: equal bit for bit (an untrained network's
    # features can be tiny, e.g. googlenet_mini's ~1e-5, below any absolute tolerance).
    exactly = dict(rtol=0, atol=0)
    if reference_features is not None:
        torch.testing.assert_close(features, reference_features, **exactly)
    torch.testing.assert_close(split, reference, **exactly)
    torch.testing.assert_close(model(images), reference, **exactly)


def test_unknown_model_lists_known_ones():
    with pytest.raises(UserError, match="lenet5"):
        get_model("lenet6")
