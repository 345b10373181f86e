"""`convnet serve` before any model is loaded: its refusals and its port."""

from __future__ import annotations

import pytest

from convnet import i18n
from convnet.commands.serve import open_socket
from convnet.errors import UserError
from tests.helpers.cli import run_in_process


@pytest.fixture
def never_serving(monkeypatch):
    """The command runs in this process: a server it wrongly started would serve until
    stopped, so starting one fails the test at once instead."""

    def run(*args, **kwargs):
        raise AssertionError("convnet serve started serving instead of refusing")

    monkeypatch.setattr("uvicorn.Server.run", run)


def test_serve_command_refuses_a_missing_run(tmp_path, capfd, never_serving):
    missing = run_in_process(
        capfd,
        "serve",
        "--run",
        str(tmp_path / "nothing"),
        "--port",
        "0",
        "--runs-dir",
        str(tmp_path),
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_serve_command_refuses_an_unknown_language(tmp_path, capfd, never_serving):
    refused = run_in_process(
        capfd, "serve", "--lang", "xx", "--port", "0", "--runs-dir", str(tmp_path)
    )
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--lang" in refused.stderr and "'xx'" in refused.stderr
    assert all(lang in refused.stderr for lang in i18n.LANGUAGES)
    assert list(tmp_path.iterdir()) == []  # refused before any training


def test_port_errors_are_clear():
    with pytest.raises(UserError, match="between 0 and 65535"):
        open_socket("127.0.0.1", 70000)
    taken = open_socket("127.0.0.1", 0)
    try:
        with pytest.raises(UserError, match="choose another --port"):
            open_socket("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
