"""Every registered model: shape with a non-default class count, gradients, finiteness."""

import pytest
import torch

from convnet.errors import UserError
from convnet.models import get_model, get_model_spec, list_models


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


@pytest.mark.parametrize("name", list_models())
def test_features_then_head_is_forward(name, build_model):
    spec = get_model_spec(name)
    model = build_model(name).eval()
    images = torch.randn(2, *spec.quick_input_size)
    with torch.no_grad():
        torch.testing.assert_close(
            model.forward_head(model.forward_features(images)), model(images)
        )


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
