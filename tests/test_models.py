"""Every registered model: shape with a non-default class count, gradients, finiteness."""

import pytest
import torch

from convnet.errors import UserError
from convnet.models import get_model, get_model_spec, list_models


@pytest.mark.parametrize("name", list_models())
def test_output_shape_with_other_class_count(name):
    spec = get_model_spec(name)
    model = get_model(name, num_classes=7)
    output = model(torch.randn(3, *spec.input_size))
    assert output.shape == (3, 7)
    assert torch.isfinite(output).all()


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_receives_a_gradient(name):
    spec = get_model_spec(name)
    torch.manual_seed(0)
    model = get_model(name, num_classes=5)
    loss = torch.nn.functional.cross_entropy(
        model(torch.randn(4, *spec.input_size)), torch.arange(4)
    )
    loss.backward()
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name
        assert torch.isfinite(parameter.grad).all(), parameter_name
        assert parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("name", list_models())
def test_features_then_head_is_forward(name):
    spec = get_model_spec(name)
    model = get_model(name).eval()
    images = torch.randn(2, *spec.input_size)
    torch.testing.assert_close(model.forward_head(model.forward_features(images)), model(images))


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
