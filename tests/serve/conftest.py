"""The web app over two quickly trained runs, shared by the serve tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from convnet.engine.run import Run
from convnet.serve.app import create_app
from convnet.serve.models import MAX_SERVED_ERROR, prepare_models
from tests.helpers.serve import TestClient, quick_runs


@pytest.fixture(scope="module")
def quick(mnist_dir, tmp_path_factory):
    runs = quick_runs(tmp_path_factory)
    errors = {model: Run(path).test_error() for model, path in runs.items()}
    assert all(error > MAX_SERVED_ERROR for error in errors.values()), (
        f"the quick runs should be undertrained, for these tests: {errors}"
    )
    return runs


@pytest.fixture(scope="module")
def served(quick):
    return prepare_models([quick["lenet5"], quick["mlp"]], runs_root=Path("nowhere"), log=print)


@pytest.fixture(scope="module")
def client(served, mnist_test):
    return TestClient(create_app(served, mnist_test))
