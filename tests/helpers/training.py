"""Short training runs on both kinds of data source (MNIST in memory, a generated image
folder), and what a run directory's files hold."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file

from convnet.engine.config import TrainConfig

SOURCES = ("idx", "folder")


def source_arguments(kind: str, folders: Path) -> list[str]:
    """A few steps' worth of data of each kind."""
    if kind == "idx":
        return ["--dataset", "mnist", "--train-subset", "600", "--test-subset", "200"]
    return ["--data", str(folders), "--workers", "0"]


def config_for(kind: str, folders: Path, out: Path, **overrides) -> TrainConfig:
    # On the CPU whatever the machine has: the resume checks are bit-exact.
    values = dict(
        model="lenet5",
        epochs=2,
        batch_size=32,
        precision="fp32",
        out=str(out),
        checkpoint_every=2,
        lr=0.05,
        device="cpu",
    )
    if kind == "idx":
        values.update(dataset="mnist", train_subset=600, test_subset=200)
    else:
        values.update(data=str(folders), workers=0)
    return TrainConfig(**{**values, **overrides})


def quiet(message: str) -> None:
    pass


def checkpoint_state(path: Path) -> dict | None:
    """The training state in a checkpoint, or None while there is none (renames are atomic,
    so a checkpoint that exists is always a whole one)."""
    try:
        with safe_open(path, "pt") as checkpoint:
            return json.loads(checkpoint.metadata()["state"])
    except FileNotFoundError:
        return None


def assert_run_directory_is_whole(run_dir: Path) -> None:
    """No temporary file, and every file of the run reads completely."""
    leftovers = [path.name for path in run_dir.rglob(".*")]
    assert leftovers == [], leftovers
    for path in run_dir.glob("*.safetensors"):
        load_file(path)
    for path in run_dir.glob("*.json"):
        json.loads(path.read_text())
