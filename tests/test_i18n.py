"""The message catalogs: every language complete and consistent with English, the fallback,
number formatting, and how a language is chosen or refused."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from convnet import i18n
from convnet.errors import UserError


def raw_catalog(lang: str) -> dict:
    return json.loads((resources.files("convnet") / "locales" / f"{lang}.json").read_text("utf-8"))


@pytest.mark.parametrize("lang", [lang for lang in i18n.LANGUAGES if lang != "en"])
def test_every_language_has_every_english_key(lang):
    english, other = i18n.catalog("en"), i18n.catalog(lang)
    assert sorted(set(english) - set(other)) == []
    assert sorted(set(other) - set(english)) == []  # no stale keys English no longer has


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_placeholders_match_english(lang):
    english, other = i18n.catalog("en"), i18n.catalog(lang)
    differ = {
        key: (i18n.placeholders(english[key]), i18n.placeholders(other[key]))
        for key in english.keys() & other.keys()
        if i18n.placeholders(english[key]) != i18n.placeholders(other[key])
    }
    assert differ == {}


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_catalogs_are_flat_namespaced_and_filled(lang):
    messages = raw_catalog(lang)
    assert messages == i18n.catalog(lang)
    for key, value in messages.items():
        assert isinstance(value, str) and value.strip(), key
        namespace, _, rest = key.partition(".")
        assert namespace and rest and key == key.strip(), key


def test_a_missing_translation_falls_back_to_english(monkeypatch):
    english = dict(i18n.catalog("en"))
    english["test.only.english"] = "Only in {where}"
    korean = dict(i18n.catalog("ko"))
    monkeypatch.setattr(i18n, "_load", {"en": english, "ko": korean}.__getitem__)
    assert i18n.text("ko", "test.only.english", where="English") == "Only in English"
    assert i18n.messages("ko")["test.only.english"] == "Only in {where}"
    assert i18n.text("ko", "no.such.key") == "no.such.key"  # never a KeyError
    assert i18n.text("xx", "language.name") == english["language.name"]


def test_text_fills_placeholders_and_keeps_missing_ones():
    key = next(k for k, v in i18n.catalog("en").items() if i18n.placeholders(v))
    names = sorted(i18n.placeholders(i18n.catalog("en")[key]))
    filled = i18n.text("ko", key, **{name: f"<{name}>" for name in names})
    assert all(f"<{name}>" in filled for name in names) and "{" not in filled
    assert "{" + names[0] + "}" in i18n.text("ko", key)


def test_messages_for_a_page_keep_only_its_prefixes():
    page = i18n.messages("ko", ("number.",))
    assert page and all(key.startswith("number.") for key in page)
    assert page["number.decimal"] == i18n.catalog("ko")["number.decimal"]


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_numbers_follow_the_catalog(lang):
    thousands = i18n.text(lang, "number.thousands")
    decimal = i18n.text(lang, "number.decimal")
    assert i18n.number(1234567.891, lang, 2) == f"1{thousands}234{thousands}567{decimal}89"
    assert i18n.number(59999.5, lang) == f"60{thousands}000"
    assert i18n.percent(0.01534, lang) == i18n.text(lang, "number.percent", value=f"1{decimal}5")
    assert i18n.percent(0.5, lang, 0) == i18n.text(lang, "number.percent", value="50")


def test_number_rules_swap_cleanly(monkeypatch):
    """A language writing 1.234,5 (German-style) must not have its separators mixed up."""
    english = dict(i18n.catalog("en"))
    swapped = {**english, "number.thousands": ".", "number.decimal": ","}
    monkeypatch.setattr(i18n, "_load", {"en": english, "ko": swapped}.__getitem__)
    assert i18n.number(1234.5, "ko", 1) == "1.234,5"


@pytest.mark.parametrize(
    ("header", "chosen"),
    [
        ("ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "ko"),
        ("en-US,en;q=0.9,ko;q=0.8", "en"),
        ("fr-FR,fr;q=0.9,ko;q=0.5", "ko"),
        ("fr-FR, en;q=0.2, ko;q=0.4", "ko"),
        ("KO", "ko"),
        ("ko;q=0, en;q=0.1", "en"),
        ("fr, de", "en"),
        ("", "en"),
        (None, "en"),
        ("ko;q=abc, en", "en"),
        ("*", "en"),
    ],
)
def test_choose_language_from_accept_language(header, chosen):
    assert i18n.choose_language(header) == chosen


def test_choose_language_default_is_used_when_nothing_matches():
    assert i18n.choose_language("fr", default="ko") == "ko"
    assert i18n.choose_language("en;q=0.3, fr", default="ko") == "en"


def test_an_unknown_language_is_refused_with_the_choices():
    assert i18n.check_language("KO") == "ko"
    with pytest.raises(UserError) as refused:
        i18n.check_language("xx")
    message = str(refused.value)
    assert "--lang" in message and "'xx'" in message
    assert all(lang in message for lang in i18n.LANGUAGES)
    with pytest.raises(UserError):
        i18n.catalog("fr")


def test_a_count_chooses_its_noun_in_english_and_korean_writes_it_once():
    assert i18n.text("en", "lecture.how.brief", epochs=1, images="x").startswith(
        "brief training: 1 epoch on"
    )
    assert "3 epochs on" in i18n.text("en", "lecture.how.brief", epochs=3, images="x")
    assert "1에폭" in i18n.text("ko", "lecture.how.brief", epochs=1, images="x")
    assert i18n.text("en", "lecture.how.brief").startswith("brief training: {epochs} epochs")
    english = " ".join(i18n.catalog("en").values())
    assert "(s)" not in english.replace("row(s) and column(s)", "")  # the page's own words
