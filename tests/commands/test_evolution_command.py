"""`convnet experiment evolution`: end to end on Fashion-MNIST, and its mistakes."""

from __future__ import annotations

import json

import pytest

from convnet.data.datasets import fetch_dataset
from tests.helpers.cli import run_in_process


@pytest.fixture(scope="module")
def fashion_mnist():
    fetch_dataset("fashion-mnist")


def test_evolution_command_end_to_end(fashion_mnist, tmp_path, capfd):
    arguments = [
        "experiment",
        "evolution",
        "--dataset",
        "fashion-mnist",
        "--models",
        "lenet5,alexnet_mini",
        "--epochs",
        "2",
        "--train-subset",
        "4000",
        "--test-subset",
        "1000",
        "--threads",
        "1",
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    first = run_in_process(capfd, *arguments, "--json", check=True)
    document = json.loads(first.stdout)
    assert document["num_train_images"] == 4000 and document["num_test_images"] == 1000
    rows = {row["model"]: row for row in document["models"]}
    assert list(rows) == ["lenet5", "alexnet_mini"]
    assert rows["lenet5"]["depth"] == 5 and rows["alexnet_mini"]["depth"] == 8
    assert rows["lenet5"]["year"] == 1998 and rows["alexnet_mini"]["year"] == 2012
    for row in rows.values():
        assert not row["reused"] and row["epochs"] == 2 and len(row["test_error_by_epoch"]) == 2
        assert row["params"] > 0 and row["macs"] > 0 and row["train_seconds"] > 0
        assert 0.3 < row["test_accuracy"] <= 1  # learned something: chance is 0.1
        assert row["published"]["d2l_10_epochs"]["network"] in {"LeNet", "AlexNet"}
    assert (tmp_path / "runs" / "evolution.png").stat().st_size > 10_000

    again = run_in_process(capfd, *arguments, check=True)  # the text table, from the cached runs
    assert again.stdout.count("reusing") == 0 and again.stderr.count("reusing") == 2
    assert "alexnet_mini" in again.stdout and "AlexNet 88.2% d2l" in again.stdout
    for model, row in rows.items():
        assert f"{100 * row['test_accuracy']:.2f}%" in again.stdout.split(model, 1)[1]


def test_evolution_command_user_errors(tmp_path, capsys):
    from convnet.cli import main

    def error(*arguments: str) -> str:
        assert main(["experiment", "evolution", *arguments, "--runs-dir", str(tmp_path)]) == 2
        return capsys.readouterr().err

    assert "alexnet_maxi" in error("--models", "lenet5,alexnet_maxi")
    assert "--epochs" in error("--epochs", "0")
    assert "twice" in error("--models", "lenet5,lenet5")
    assert "--reuse-only" in error("--models", "lenet5", "--reuse-only", "--train-subset", "10")
