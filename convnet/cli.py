"""The `convnet` command: gathers the subcommands of the modules in convnet/commands.

With --json exactly one JSON document goes to standard output; progress and logs go to
standard error. A mistake the user can fix exits with status 2 and a one-paragraph message.
Building the parser imports every command module, so `convnet --help` starts at once only
while they import nothing heavy (convnet/commands/__init__.py says how).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from convnet.commands import COMMAND_MODULES
from convnet.commands.catalog import MODEL_NAMES
from convnet.commands.common import Command, Parser
from convnet.errors import UserError
from convnet.files import WriteFailed, explain


def all_commands() -> dict[str, Command]:
    commands: dict[str, Command] = {}
    for module_name in COMMAND_MODULES:
        commands.update(importlib.import_module(f"convnet.commands.{module_name}").COMMANDS)
    return commands


def build_parser() -> argparse.ArgumentParser:
    from convnet import __version__

    parser = Parser(
        prog="convnet",
        description="Convolutional neural networks you can build, train, measure and look inside.",
        epilog="models: " + ", ".join(MODEL_NAMES),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"convnet {__version__}",
        help="print the version and exit",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in all_commands().items():
        command.configure(subparsers.add_parser(name, help=command.help, description=command.help))
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parse_args, but an unknown option is reported by the command it was given to (`convnet
    zoo: error: …`, pointing at `convnet zoo --help`), not by `convnet` itself."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def chosen_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """The options of the (sub)commands `args` ran, e.g. {"--report": "runs/demo/report"}:
    each one's longest spelling and its value, where that value is text (a path, maybe)."""
    options: dict[str, str] = {}
    while parser is not None:
        below = None
        for action in parser._actions:
            value = getattr(args, action.dest, None)
            if isinstance(action, argparse._SubParsersAction):
                below = action.choices.get(value)
            elif action.option_strings and isinstance(value, str):
                options[max(action.option_strings, key=len)] = value
        parser = below
    return options


def option_setting(path: Path, options: dict[str, str]) -> str | None:
    """The option whose value is `path`, a folder above it, or the file in it (an early
    check writes into --out's folder): the one to change when `path` cannot be written."""
    target = path.absolute()
    setting = [
        (len(given.parts), option)
        for option, given in ((option, Path(value).absolute()) for option, value in options.items())
        if target == given or given in target.parents or target == given.parent
    ]
    return max(setting)[1] if setting else None  # the most specific where several fit


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_arguments(parser, argv)
    try:
        return all_commands()[args.command].run(args)
    except WriteFailed as error:  # a path that cannot be written: name the option setting it
        option = option_setting(error.path, chosen_options(parser, args))
        print(f"convnet: error: {error.set_by(option) if option else error}", file=sys.stderr)
        return 2
    except UserError as error:
        print(f"convnet: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `convnet … | head` stopped reading: not an error of ours
        # Python flushes stdout again at exit, into the same closed pipe: point it elsewhere
        # (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a program stopped by it
    except OSError as error:  # the machine's faults: a full disk, a read-only path, …
        failed = explain(error)
        if failed is None:
            raise
        print(f"convnet: error: {failed}", file=sys.stderr)
        return 2
    except MemoryError:
        print(
            "convnet: error: the machine ran out of memory. Try a smaller --batch-size, or "
            "close other programs.",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print("convnet: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
