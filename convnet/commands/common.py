"""What every command module shares: output in text or JSON, logging, the data directory."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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
