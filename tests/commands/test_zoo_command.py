"""`convnet zoo`: the table and the chart."""

from __future__ import annotations

import pytest

from convnet.analysis.zoo import zoo_names
from tests.helpers.cli import _cli_json


@pytest.mark.slow
def test_zoo_command_table_and_chart(tmp_path, capsys):
    chart = tmp_path / "ilsvrc.png"
    document = _cli_json(capsys, "zoo", "--no-speed", "--plot", str(chart))
    rows = {row["name"]: row for row in document["models"]}
    assert set(rows) == set(zoo_names())
    assert (rows["vgg19"]["depth"], rows["vgg19"]["params"]) == (19, 143_667_240)
    assert rows["vgg19"]["fp32_images_per_second"] is None
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    timed = _cli_json(capsys, "zoo", "--models", "resnet18", "--repeats", "1", "--batch-size", "2")
    row = timed["models"][0]
    assert row["fp32_images_per_second"] > 0 and row["fast_images_per_second"] > 0
