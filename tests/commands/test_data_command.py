"""`convnet data`: listing the data sets."""

import json

from tests.helpers.cli import run_cli


def test_data_list_json():
    rows = json.loads(run_cli("data", "list", "--json", check=True).stdout)
    assert {row["name"] for row in rows} >= {"mnist", "fashion-mnist"}
