"""The command line as tests run it: in this process (`convnet.cli.main`, the same parser,
dispatch and exit status as the program) or, where the separate process matters, as
`python -m convnet` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
