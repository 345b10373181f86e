"""What every command module shares: output in text or JSON, logging, the data directory."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from convnet.errors import UserError


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, a function adding its arguments, and its runner."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def log(message: str) -> None:
    """Progress and notes go to standard error, so --json output stays one document."""
    print(message, file=sys.stderr, flush=True)


def emit(args: argparse.Namespace, document: object, text: str) -> None:
    print(json.dumps(document, indent=2) if getattr(args, "json", False) else text)


def data_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.data_dir) if getattr(args, "data_dir", None) else None


def check_counts(args: argparse.Namespace, *options: str) -> None:
    """Counts such as --epochs and --train-subset, when given, are at least 1; --threads is
    0 (automatic) up to the CPUs this process may use (thousands of threads would bury the
    machine rather than speed anything up)."""
    for option in options:
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, not {value}.")
    threads = getattr(args, "threads", 0) or 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    if not 0 <= threads <= cpus:
        raise UserError(
            f"--threads must be between 0 (automatic) and {cpus}, the CPUs this process may "
            f"use, not {threads}."
        )


def settings_from_args(settings_class: type, args: argparse.Namespace, **values: object):
    """An experiment's settings dataclass from the flags of the same names, plus `values`."""
    names = (item.name for item in dataclasses.fields(settings_class))
    given = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return settings_class(**{**given, **values})
