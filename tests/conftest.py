"""Shared fixtures: the real MNIST data (fetched by `make setup`) and one trained run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convnet.data.datasets import default_data_dir, fetch_dataset, load_dataset


def run_cli(
    *arguments: str, env: dict | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """Run `python -m convnet ARGUMENTS` in a subprocess, as a user would."""
    result = subprocess.run(
        [sys.executable, "-m", "convnet", *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"convnet {' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="session")
def build_model():
    """Registered models built once per session (10 classes, quick input size): the
    ImageNet-size families take seconds to initialise."""
    from functools import cache

    import torch

    from convnet.models import get_model

    @cache
    def build(name: str):
        torch.manual_seed(0)
        return get_model(name, num_classes=7)

    return build


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The data cache holding verified MNIST (fetched now if `make setup` has not)."""
    fetch_dataset("mnist")
    return default_data_dir()


@pytest.fixture(scope="session")
def mnist_test(mnist_dir):
    return load_dataset("mnist", "test")


@pytest.fixture(scope="session")
def trained_run(mnist_dir, tmp_path_factory) -> tuple[Path, dict]:
    """One epoch of lenet5 on the full MNIST training set, through the command line."""
    run_dir = tmp_path_factory.mktemp("runs") / "lenet5"
    result = run_cli(
        "train", "lenet5", "--epochs", "1", "--out", str(run_dir), "--json", check=True
    )
    return run_dir, json.loads(result.stdout)
