"""Options every run shares: TensorBoard logging, repeating a run from its config.json."""

from __future__ import annotations

import csv
import json
import sys

import pytest
from conftest import run_cli
from safetensors.torch import load_file

from convnet.cli import main
from convnet.engine.run import Run

TINY = (
    "--epochs",
    "2",
    "--train-subset",
    "300",
    "--test-subset",
    "100",
    "--batch-size",
    "50",
    "--precision",
    "fp32",
    "--threads",
    "1",
)


def test_tensorboard_scalars_are_the_numbers_of_steps_csv_and_metrics_csv(mnist_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    run_cli("train", "lenet5", *TINY, "--tensorboard", "--out", str(out), check=True)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    steps = Run(out).steps()
    assert len(steps) == 12  # 300 images / 50 per step × 2 epochs
    for column, tag in (
        ("loss", "train/loss"),
        ("lr", "train/lr"),
        ("images_per_second", "train/images_per_second"),
    ):
        logged = [(event.step, event.value) for event in events.Scalars(tag)]
        assert [step for step, _ in logged] == [int(row["step"]) for row in steps]
        # steps.csv holds 6 significant digits, the event file float32
        assert [value for _, value in logged] == pytest.approx(
            [row[column] for row in steps], rel=1e-5
        ), tag
    with (out / "metrics.csv").open() as handle:
        epochs = list(csv.DictReader(handle))
    logged = events.Scalars("epoch/eval_error")
    assert [event.step for event in logged] == [6, 12]
    assert [event.value for event in logged] == pytest.approx(
        [float(row["eval_error"]) for row in epochs], rel=1e-6
    )
    assert json.loads((out / "config.json").read_text())["tensorboard"] is True


def test_tensorboard_missing_is_refused_with_the_install_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if it were not installed
    status = main(["train", "lenet5", "--tensorboard", "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert status == 2 and "pip install tensorboard" in error and "Traceback" not in error
    assert not (tmp_path / "run").exists()


def test_a_run_repeated_from_its_config_json_has_the_same_weights(mnist_dir, tmp_path):
    first, again, changed = tmp_path / "first", tmp_path / "again", tmp_path / "changed"
    run_cli("train", "lenet5", *TINY, "--seed", "3", "--out", str(first), check=True)
    config = str(first / "config.json")
    run_cli("train", "--config", config, "--threads", "1", "--out", str(again), check=True)
    run_cli(
        "train",
        "--config",
        config,
        "--threads",
        "1",
        "--seed",
        "4",
        "--out",
        str(changed),
        check=True,
    )
    weights = [load_file(path / "model.safetensors") for path in (first, again, changed)]
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        assert tensor.equal(weights[1][name]), name  # bit-exact
    assert not all(tensor.equal(weights[2][name]) for name, tensor in weights[0].items())
    saved = [json.loads((path / "config.json").read_text()) for path in (first, again, changed)]
    for document in saved:
        document.pop("out")
    assert saved[0] == saved[1] and saved[2]["seed"] == 4
    assert (first / "model.safetensors").read_bytes() == (again / "model.safetensors").read_bytes()


# --- threads ------------------------------------------------------------------------------

# Every command that computes (zoo times models; summary only builds shapes on the meta
# device, and data fetches files, so they have none).
COMPUTE_COMMANDS = [
    ("train",),
    ("evaluate",),
    ("predict",),
    ("serve",),
    ("zoo",),
    ("experiment", "shift"),
    ("experiment", "invariance"),
    ("experiment", "cost"),
    ("experiment", "evolution"),
    ("report", "lecture"),
]


def subparser(path: tuple[str, ...]):
    import argparse

    from convnet.cli import build_parser

    parser = build_parser()
    for name in path:
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[name]
    return parser


@pytest.mark.parametrize("path", COMPUTE_COMMANDS, ids=" ".join)
def test_every_compute_command_takes_threads(path):
    parser = subparser(path)
    option = next(a for a in parser._actions if "--threads" in a.option_strings)
    assert option.type is int and option.help
    # cost times one thread by default (it measures the network, not the scheduler)
    assert option.default == (1 if path == ("experiment", "cost") else 0)


@pytest.mark.parametrize(
    ("load_average", "cpus", "expected"),
    [(0.3, 2, 2), (1.9, 2, 2), (2.0, 2, 1), (5.4, 2, 1), (5.4, 16, 2)],
)
def test_the_automatic_thread_count_drops_to_one_on_a_busy_machine(load_average, cpus, expected):
    from convnet.engine.threads import automatic_threads

    assert automatic_threads(load_average, cpus, default=2) == expected


def test_commands_use_the_automatic_choice_and_refuse_too_many(trained_run, monkeypatch, capsys):
    import torch

    from convnet.engine.threads import available_cpus

    run_dir, _ = trained_run
    before = torch.get_num_threads()
    monkeypatch.setattr("os.getloadavg", lambda: (99.0, 99.0, 99.0))  # a busy machine
    try:
        arguments = ["evaluate", str(run_dir), "--test-subset", "50", "--json"]
        assert main(arguments) == 0
        assert json.loads(capsys.readouterr().out)["threads"] == 1
        if available_cpus() >= 2:
            assert main([*arguments, "--threads", "2"]) == 0
            assert json.loads(capsys.readouterr().out)["threads"] == 2
        assert main([*arguments, "--threads", str(available_cpus() + 1)]) == 2
        assert "--threads must be between 0 (automatic)" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
