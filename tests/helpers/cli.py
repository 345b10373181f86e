"""The command line as tests run it: in this process (`convnet.cli.main`, the same parser,
dispatch and exit status as the program) or, where the separate process matters, as
`python -m convnet` in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator

from convnet.cli import main


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


@contextlib.contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    """os.environ with `variables` set, as a child process would see it; restored after."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


@contextlib.contextmanager
def _warnings_as_a_fresh_interpreter_shows_them() -> Iterator[None]:
    """Python's default warning filters, each warning written to standard error: a warning
    the command gives counts against its one-paragraph message as it would in a terminal
    (pytest would otherwise only collect it)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (
            DeprecationWarning,
            PendingDeprecationWarning,
            ImportWarning,
            ResourceWarning,
        ):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
        warnings.showwarning = _show_warning
        yield


def run_in_process(
    capture, *arguments: str, env: dict | None = None, check: bool = False
) -> subprocess.CompletedProcess:
    """`convnet ARGUMENTS` as `run_cli` runs it, but in this process, through
    `convnet.cli.main` (seconds of imports cheaper): its exit status (argparse's SystemExit
    included) and what it wrote, captured by `capture` (capfd or capsys), as the same
    CompletedProcess. An exception main() does not turn into a message, the traceback a user
    would see, escapes and fails the test."""
    capture.readouterr()  # what was written before is not the command's
    with _environment(env or {}), _warnings_as_a_fresh_interpreter_shows_them():
        try:
            code = main(list(arguments))
        except SystemExit as exit:  # argparse: --help, or a mistake on the command line
            code = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
    captured = capture.readouterr()
    result = subprocess.CompletedProcess(["convnet", *arguments], code, captured.out, captured.err)
    if check and result.returncode != 0:
        raise AssertionError(f"convnet {' '.join(arguments)} failed:\n{result.stderr[-3000:]}")
    return result


def assert_user_error(result, *phrases):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def refused(capsys, arguments, *phrases):
    """`convnet ARGUMENTS` in this process: exit status 2 and a message naming each phrase
    (an uncaught exception, the traceback a user would see, fails the test)."""
    from convnet.cli import main

    code = main(list(arguments))
    error = capsys.readouterr().err
    assert code == 2, error
    for phrase in phrases:
        assert phrase in error, error
    return error


def cli(capsys, *arguments: str) -> str:
    """Run `convnet ARGUMENTS` in this process (faster than a subprocess); return stdout."""
    capsys.readouterr()
    assert main(list(arguments)) == 0
    return capsys.readouterr().out


def assert_clean_refusal(code: int, stderr: str, *phrases: str) -> None:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    assert code == 2, stderr
    assert "Traceback" not in stderr and message.startswith("convnet: error: "), stderr
    for phrase in phrases:
        assert phrase in message, message


def _cli_json(capsys, *arguments: str) -> object:
    """Run the command line in this process (no second torch import) and parse its JSON."""
    from convnet.cli import main

    capsys.readouterr()
    assert main([*arguments, "--json"]) == 0
    return json.loads(capsys.readouterr().out)
