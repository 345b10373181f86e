"""Every registered model: shape with a non-default class count, gradients, finiteness."""

import pytest
import torch

from convnet.errors import UserError
from convnet.models import get_model, get_model_spec, list_models
from convnet.models.registry import FeaturesThenHead


@pytest.mark.parametrize("name", list_models())
def test_output_shape_with_other_class_count(name, build_model):
    spec = get_model_spec(name)
    model = build_model(name)
    output = model(torch.randn(3, *spec.quick_input_size))
    assert output.shape == (3, 7)
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_receives_a_gradient(name, build_model):
    spec = get_model_spec(name)
    model = build_model(name).train()
    model.zero_grad(set_to_none=True)
    images = torch.randn(4, *spec.quick_input_size)
    loss = torch.nn.functional.cross_entropy(model(images), torch.arange(4))
    loss.backward()
    names, parameters = zip(*model.named_parameters(), strict=True)
    missing = [n for n, p in zip(names, parameters, strict=True) if p.grad is None]
    assert not missing, missing
    norms = torch.stack(torch._foreach_norm([p.grad for p in parameters]))  # one pass over all
    bad = [n for n, norm in zip(names, norms.tolist(), strict=True) if not 0 < norm < float("inf")]
    assert not bad, bad


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
def test_features_then_head_is_the_whole_network(name, build_model):
    spec = get_model_spec(name)
    model = build_model(name).eval()
    images = torch.randn(2, *spec.quick_input_size)
    with torch.no_grad():
        features = model.forward_features(images)
        split = model.forward_head(features)
        reference_features, reference = forward_without_the_split(model, images)
    assert split.shape == (2, 7)
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


def test_lenet5_1998_c3_reads_only_table_one_connections():
    from convnet.models.lenet import C3_CONNECTION_TABLE

    c3 = get_model("lenet5_1998").features.c3
    dense = c3.dense_weight()
    for output, sources in enumerate(C3_CONNECTION_TABLE):
        connected = {s for s in range(6) if dense[output, s].abs().sum() > 0}
        assert connected == set(sources)
    # Columns 12–14 of Table I are the discontinuous ones.
    assert C3_CONNECTION_TABLE[12:15] == ((0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_lenet5_c5_matrix_product_equals_the_convolution(layout):
    from convnet.models.lenet import WholeInputConv2d

    torch.manual_seed(0)
    convolution = torch.nn.Conv2d(16, 120, 5).to(memory_format=layout)
    product = WholeInputConv2d(16, 120, 5).to(memory_format=layout)
    product.load_state_dict(convolution.state_dict())
    inputs = torch.randn(8, 16, 5, 5).contiguous(memory_format=layout).requires_grad_()
    expected, got = convolution(inputs), product(inputs)
    assert got.shape == expected.shape == (8, 120, 1, 1)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(expected)
    wanted = torch.autograd.grad(expected, [inputs, convolution.weight, convolution.bias], upstream)
    found = torch.autograd.grad(got, [inputs, product.weight, product.bias], upstream)
    for one, other in zip(found, wanted, strict=True):
        torch.testing.assert_close(one, other, rtol=1e-5, atol=1e-5)
    assert found[0].is_contiguous(memory_format=layout)  # the layout carries through
    larger = torch.randn(2, 16, 9, 9)  # a larger input: an ordinary convolution, 5×5 maps
    assert torch.equal(product(larger), convolution(larger))


def test_lenet5_1998_scaled_tanh_and_rbf():
    from convnet.models.lenet import EuclideanRBF, ScaledTanh

    activation = ScaledTanh()
    assert activation(torch.tensor([1e6])).item() == pytest.approx(1.7159)
    assert activation(torch.tensor([1.0])).item() == pytest.approx(
        1.0, abs=2e-3
    )  # f(1) ≈ 1 by design
    rbf = EuclideanRBF(84, 10)
    assert set(rbf.prototypes.unique().tolist()) == {-1.0, 1.0}
    assert rbf(rbf.prototypes[3:4]).argmax().item() == 3  # a prototype is nearest to itself


@pytest.mark.parametrize("name", list_models())
def test_inference_folds_batch_norm_exactly_and_undoes_it(name, build_model):
    """fast_inference folds every batch norm into its convolution (in evaluation): the same
    outputs up to rounding, and afterwards the very same parameters and modules."""
    import copy

    from convnet.engine.device import conv_batch_norm_pairs, fast_inference

    spec = get_model_spec(name)
    model = copy.deepcopy(build_model(name)).eval()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    generator = torch.Generator().manual_seed(0)
    for norm in norms:  # statistics far from the identity, so a missed fold shows
        for tensor, low, high in (
            (norm.running_mean, -1, 1),
            (norm.running_var, 0.5, 2),
            (norm.weight, 0.5, 1.5),
            (norm.bias, -1, 1),
        ):
            tensor.data.copy_(torch.empty_like(tensor).uniform_(low, high, generator=generator))
    # Every batch norm of our families follows a convolution of its own.
    assert len(conv_batch_norm_pairs(model)) == len(norms)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    images = torch.randn(2, *spec.quick_input_size)
    with torch.no_grad():
        reference = model(images)
        with fast_inference(model, torch.device("cpu"), "fp32") as prepare:
            assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
            folded = model(prepare(images))
    torch.testing.assert_close(folded, reference, rtol=1e-4, atol=1e-4)
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[key], before[key]) for key in before)
    assert len([m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]) == len(norms)
    model.train()  # training uses batch statistics: nothing may be folded
    with fast_inference(model, torch.device("cpu"), "fp32"):
        assert len([m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]) == len(
            norms
        )
