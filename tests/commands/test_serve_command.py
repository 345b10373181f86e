"""`convnet serve` before any model is loaded: its refusals and its port."""

from __future__ import annotations

import pytest

from convnet import i18n
from convnet.commands.serve import open_socket
from convnet.errors import UserError
from tests.helpers.cli import run_cli


def test_serve_command_refuses_a_missing_run(tmp_path):
    missing = run_cli(
        "serve", "--run", str(tmp_path / "nothing"), "--port", "0", "--runs-dir", str(tmp_path)
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_serve_command_refuses_an_unknown_language(tmp_path):
    refused = run_cli("serve", "--lang", "xx", "--port", "0", "--runs-dir", str(tmp_path))
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
