"""LeNet-5's own layers: Table I's C3 connections, C5 as a matrix product, the scaled tanh
and the RBF output."""

import pytest
import torch

from convnet.models import get_model


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
