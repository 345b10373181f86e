"""A run's config.json read back (convnet/engine/saved_config.py): every damaged or edited
value refused in one paragraph with exit status 2, never a traceback or a silent use; and a
resumed run whose config.json was edited to another batch refused before steps.csv is cut."""

from __future__ import annotations

import json
import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import load_file

from convnet.engine.weight_files import safetensors_bytes
from tests.helpers.cli import refused

EDITS = {
    "unknown model option": ({"model_config": {"depth": 3}}, '"depth", which is not an option'),
    "option of the wrong value": ({"model_config": {"pooling": 7}}, "does not build lenet5"),
    "the registry's own option": ({"model_config": {"num_classes": 3}}, "not an option"),
    "negative test subset": ({"test_subset": -3}, "--test-subset must be at least 1, not -3"),
    "huge batch": ({"batch_size": 10**12}, '"batch_size" is 1,000,000,000,000, more than'),
    "huge epochs": ({"epochs": 10**30}, '"epochs" is'),
    "a class twice": ({"classes": ["0", "0"] + [str(n) for n in range(2, 10)]}, "twice"),
    "no processes": ({"world_size": 0}, '"world_size" is 0'),
    "unknown data set": ({"dataset": "mnistt"}, "Unknown data set 'mnistt'"),
    "deep options": ({"model_config": {"a": [[[[[1]]]]]}}, "nests deeper than 4 levels"),
    # found by tools/fuzz.py: a KeyError before
    "custom module without its size": ({"custom_module": {}}, '"custom_module" needs'),
}


@pytest.fixture
def run_copy(trained_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run[0], run_dir)
    return run_dir


def edit(run_dir, changes: dict) -> None:
    path = run_dir / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.mark.parametrize("case", list(EDITS))
def test_an_edited_config_is_refused_naming_the_value(case, run_copy, capsys):
    changes, phrase = EDITS[case]
    edit(run_copy, changes)
    for command in (
        ["evaluate", str(run_copy), "--test-subset", "5"],
        ["train", "--resume", str(run_copy)],
    ):
        error = refused(capsys, command, "config.json is not a valid run configuration", phrase)
        assert len(error.strip().splitlines()) == 1


def test_a_config_nested_deeper_than_python_can_parse_is_refused(run_copy, capsys):
    (run_copy / "config.json").write_text('{"model": "lenet5", "model_config": ' + "[" * 100_000)
    refused(capsys, ["evaluate", str(run_copy)], "nests deeper than any configuration")
    deep = run_copy.parent / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    refused(capsys, ["train", "--config", str(deep)], "nests deeper than any run configuration")


def test_a_config_option_the_model_lacks_is_refused_before_training(run_copy, tmp_path, capsys):
    edit(run_copy, {"model_config": {"depth": 3}})
    refused(
        capsys,
        ["train", "--config", str(run_copy / "config.json"), "--out", str(tmp_path / "new")],
        "not an option of lenet5",
    )


def checkpoint_without_its_batch(run_dir) -> None:
    """The checkpoint as an older convnet wrote it: no global batch in its state."""
    path = run_dir / "checkpoint.safetensors"
    with safe_open(path, "pt") as handle:
        metadata = handle.metadata()
    state = json.loads(metadata["state"])
    state.pop("global_batch", None)
    path.write_bytes(safetensors_bytes(load_file(path), {**metadata, "state": json.dumps(state)}))


@pytest.mark.parametrize("checkpoint", ["today's", "older"])
def test_resume_refuses_a_batch_edited_since_the_checkpoint(checkpoint, run_copy, capsys):
    if checkpoint == "older":
        checkpoint_without_its_batch(run_copy)
    steps = (run_copy / "steps.csv").read_bytes()
    edit(run_copy, {"batch_size": 60_000})
    phrase = "images per step" if checkpoint == "today's" else "was config.json edited?"
    refused(capsys, ["train", "--resume", str(run_copy), "--epochs", "2"], phrase, "batch")
    assert (run_copy / "steps.csv").read_bytes() == steps  # not cut
