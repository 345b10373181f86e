"""The web page's and the server's texts (convnet/serve/app.py): every text the page asks for
and every refusal the server words is in the message catalog, in every language, and a
refusal comes in the language asked."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from convnet import i18n
from convnet.serve.anatomy import POOLING_KINDS
from convnet.serve.app import create_app
from convnet.serve.models import DEFAULT_MODELS
from tests.helpers.serve import TestClient, png_of_size, post_json, post_png


def page_sources() -> dict[str, str]:
    """The page's files, and the module that words the server's sentences about the models."""
    package = resources.files("convnet.serve")
    files = {
        name: package / "static" / name
        for name in ("index.html", "app.js", "views.js", "insides.js", "explorer.js", "i18n.js")
    }
    return {
        name: path.read_text("utf-8")
        for name, path in {**files, "served.py": package / "served.py"}.items()
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
    named |= {f"page.layer.kind.{kind}" for kind in POOLING_KINDS.values()}  # from a layer's kind
    named |= {"page.layer.kind.convolution", "page.layer.kind.other"}
    assert sorted(named - set(english)) == []
    assert len(named) > 60


def refusal_names() -> set[str]:
    """The catalog names of every refusal the server words: RequestError(status, name, …)
    in convnet/serve and UserError(message, key, …) in the image reader it passes on."""
    import ast

    sources = [
        *(resources.files("convnet.serve").iterdir()),
        resources.files("convnet.data") / "images.py",
    ]
    names = set()
    for source in sources:
        if not source.name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(source.read_text("utf-8"))):
            called = isinstance(node, ast.Call) and getattr(node.func, "id", None)
            named = called in {"RequestError", "UserError"} and len(node.args) > 1
            if named and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
    return names


def test_every_refusal_has_a_sentence_in_every_language():
    names = refusal_names()
    assert {"image_blank", "busy", "no_network", "body_too_slow"} <= names
    for lang in i18n.LANGUAGES:
        assert (
            sorted(
                f"server.error.{name}"
                for name in names
                if f"server.error.{name}" not in i18n.catalog(lang)
            )
            == []
        )


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_refusals_are_worded_in_the_language_asked(client, served, mnist_test, lang):
    """?lang= (what the page sends), else --lang, else Accept-Language words the error."""
    limit = i18n.text(lang, "server.error.parameter.at_most", limit="6")
    cases = [
        (
            lambda **k: post_png(client, png_of_size(64, 64), **k),
            422,
            i18n.text(lang, "server.error.image_blank"),
        ),
        (
            lambda **k: post_json(
                client, {"pixels": mnist_test.images[0].tolist()}, shift_x=7, **k
            ),
            422,
            i18n.text(lang, "server.error.parameters", problems=f"shift_x: {limit}"),
        ),
        (
            lambda **k: client.get("/nowhere", params=k),
            404,
            i18n.text(lang, "server.error.not_found"),
        ),
        (
            lambda **k: client.get("/api/samples", params={"index": 10**6, **k}),
            404,
            i18n.text(
                lang,
                "server.error.no_sample",
                index=i18n.number(10**6, lang),
                last=i18n.number(len(mnist_test.labels) - 1, lang),
            ),
        ),
    ]
    for ask, status, expected in cases:
        reply = ask(lang=lang)
        assert (reply.status_code, reply.json()["error"]) == (status, expected)
    browser = client.get("/nowhere", headers={"Accept-Language": f"{lang},xx;q=0.5"})
    assert browser.json()["error"] == i18n.text(lang, "server.error.not_found")
    fixed = TestClient(create_app(served, mnist_test, language=lang))
    assert fixed.get("/nowhere", headers={"Accept-Language": "xx"}).json()["error"] == (
        i18n.text(lang, "server.error.not_found")
    )
