"""`convnet serve` before any model is loaded: its refusals, its port, and the page's texts
in the message catalog."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from conftest import run_cli

from convnet import i18n
from convnet.commands.serve import open_socket
from convnet.errors import UserError
from convnet.serve.models import DEFAULT_MODELS


def page_sources() -> dict[str, str]:
    """The page's files, and the module that words the server's sentences about the models."""
    package = resources.files("convnet.serve")
    files = {
        name: package / "static" / name for name in ("index.html", "app.js", "views.js", "i18n.js")
    }
    return {
        name: path.read_text("utf-8")
        for name, path in {**files, "models.py": package / "models.py"}.items()
    }


def test_every_text_the_page_asks_for_is_in_the_catalog():
    """The keys named in the page's HTML and scripts, and in the server's sentences, exist in
    English (test_i18n checks that every language has every English key)."""
    english = i18n.catalog("en")
    named = set()
    for name, source in page_sources().items():
        pattern = (
            r'data-i18n(?:-label)?="([^"]+)"'
            if name.endswith(".html")
            else (r'"((?:page|number)\.[a-z_.]+)"')
        )
        found = set(re.findall(pattern, source))
        assert found or name == "i18n.js", name
        named |= found
    named |= {f"page.role.{role}" for role in DEFAULT_MODELS}  # built from a role's name
    assert sorted(named - set(english)) == []
    assert len(named) > 60


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
