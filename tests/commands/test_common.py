"""What the commands share (convnet/commands/common.py, and the rules of
convnet/commands/__init__.py): a command line that starts at once (issue 18) — the help
pages and `convnet data list` import nothing heavy — every option's help names its default,
and every command that computes takes --threads.

How fast that is shows benchmarks/cli_startup.py; these tests check what makes it so."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from convnet.cli import build_parser, main

# Packages that take seconds to import (torch alone about two) or pull torch in.
HEAVY = (
    "torch",
    "torchvision",
    "matplotlib",
    "numpy",
    "PIL",
    "fastapi",
    "uvicorn",
    "scipy",
    "captum",
    "onnx",
    "onnxruntime",
    "tensorboard",
    "safetensors",
    "tqdm",
)


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """The parser and every subparser below it, each with the words that reach it."""
    found = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, subparser in action.choices.items():
                found += walk(subparser, (*path, name))
    return found


def command_lines() -> list[list[str]]:
    """`--help` of the program and of every command and subcommand, and `data list`."""
    helps = [[*path, "--help"] for path, _ in walk(build_parser())]
    return [*helps, ["data", "list"], ["data", "list", "--json"]]


# Runs each command line in one fresh interpreter and prints, after each, the heavy
# packages imported so far: the first line naming one tells which command pulled it in.
PROBE = """
import contextlib, io, json, sys
from convnet.cli import main
heavy = set(json.loads(sys.argv[1]))
for argv in json.loads(sys.argv[2]):
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main(argv)
        except SystemExit as exit:
            status = exit.code
    loaded = sorted({name.split(".")[0] for name in sys.modules} & heavy)
    print(json.dumps({"argv": argv, "status": status, "heavy": loaded}))
"""


def test_help_pages_and_data_list_import_nothing_heavy(tmp_path):
    lines = command_lines()
    assert ["experiment", "evolution", "--help"] in lines  # subcommands are walked too
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(HEAVY), json.dumps(lines)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "CONVNET_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [report["argv"] for report in reports] == lines
    for report in reports:
        assert report["status"] == 0, report
        assert report["heavy"] == [], (
            f"convnet {' '.join(report['argv'])} imported {report['heavy']}"
        )


def shown_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """An option's help text as `--help` prints it (default filled in), before wrapping."""
    return parser._get_formatter()._expand_help(action)


@pytest.mark.parametrize("path", [path for path, _ in walk(build_parser())], ids=" ".join)
def test_every_option_has_one_line_of_help_that_shows_its_default(path):
    parser = dict(walk(build_parser()))[path]
    for action in parser._actions:
        name = "/".join(action.option_strings) or action.dest
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help and "\n" not in choice.help, f"{path} {choice.dest}"
            continue
        assert action.help and action.help.strip(), f"convnet {' '.join(path)}: {name} has no help"
        text = shown_help(parser, action)
        assert "\n" not in text, f"convnet {' '.join(path)}: {name}'s help is not one line"
        assert text.count("default") <= 1, f"convnet {' '.join(path)}: {name} names two defaults"
        if action.nargs == 0 or action.default in (None, False, argparse.SUPPRESS, []):
            continue  # a switch, or an option whose help says what happens without it
        assert str(action.default) in text, (
            f"convnet {' '.join(path)}: {name}'s help does not show its default "
            f"{action.default!r}: {text!r}"
        )


def test_the_help_pages_show_defaults_as_argparse_substitutes_them():
    parser = dict(walk(build_parser()))[("zoo",)]
    page = parser.format_help()
    assert "(default: 3)" in page and "(default: 16)" in page  # --repeats, --batch-size
    assert "(default: False)" not in page and "(default: None)" not in page


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
