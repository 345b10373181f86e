"""The ordinary networks' parameter counts."""

from convnet.models import get_model


def test_parameter_counts_of_the_ordinary_networks():
    count = lambda name: sum(p.numel() for p in get_model(name).parameters())  # noqa: E731
    assert count("mlp_60k") == 1024 * 60 + 60 + 60 * 10 + 10 == 62_110
    assert abs(count("mlp_60k") - count("lenet5")) <= 0.01 * count("lenet5")
    assert count("mlp") == 1024 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
