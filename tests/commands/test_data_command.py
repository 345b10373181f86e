"""`convnet data`: listing the data sets."""

import json

from tests.helpers.cli import run_in_process


def test_data_list_json(capfd):
    rows = json.loads(run_in_process(capfd, "data", "list", "--json", check=True).stdout)
    assert {row["name"] for row in rows} >= {"mnist", "fashion-mnist"}
