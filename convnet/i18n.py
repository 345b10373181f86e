"""Messages in the lecture's languages: one flat catalog per language, key → text.

The catalogs are `convnet/locales/<lang>.json`: flat objects whose keys are namespaced by
where the text appears (`page.*` for the web page, `number.*` for how numbers are written)
and whose values may hold `{name}` placeholders. English is complete; another language may
lack a key, and then its English text is used, so a missing translation never breaks a
page or a report. Numbers are formatted here only, from the catalog's own `number.*` rules,
so the web page (which receives the same catalog) writes them the same way.
"""

from __future__ import annotations

import json
import re
import string
from functools import cache
from importlib import resources

from convnet.errors import UserError

LANGUAGES = ("en", "ko")
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAME = "language.name"  # each catalog names its language in that language
LANGUAGE_TAG = re.compile(r"^\s*([A-Za-z]{1,8})(?:-[A-Za-z0-9]{1,8})*\s*$")


class _Filler(string.Formatter):
    """Fills a message's placeholders: a value not given stays visible as {name}, and
    `{count:image|images}` writes the noun in the number the count takes (English; a
    language without plurals writes the noun once)."""

    def get_value(self, key, args, kwargs):
        return kwargs[key] if key in kwargs else "{" + str(key) + "}"

    def format_field(self, value, format_spec: str) -> str:
        if "|" in format_spec:
            singular, plural = format_spec.split("|", 1)
            return singular if str(value) == "1" else plural
        return super().format_field(value, format_spec)


_FILLER = _Filler()


@cache
def _load(lang: str) -> dict[str, str]:
    path = resources.files("convnet") / "locales" / f"{lang}.json"
    messages = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(messages, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in messages.items()
    ):
        raise ValueError(f"locales/{lang}.json must be one flat object of strings")
    return messages


def check_language(lang: str, option: str = "--lang") -> str:
    """`lang` if it is one of LANGUAGES (any case), else a UserError naming the choices."""
    code = str(lang).strip().lower()
    if code not in LANGUAGES:
        raise UserError(
            f"{option} must be one of {', '.join(LANGUAGES)} "
            f"({', '.join(f'{c}: {text(c, LANGUAGE_NAME)}' for c in LANGUAGES)}), not '{lang}'."
        )
    return code


def catalog(lang: str) -> dict[str, str]:
    """The messages of `lang` as its file holds them (a copy), without the English fallback."""
    return dict(_load(check_language(lang)))


def messages(lang: str, prefixes: tuple[str, ...] = ()) -> dict[str, str]:
    """Every English key with `lang`'s text where it has one; only keys under `prefixes`
    (e.g. ("page.", "number.")) when given. This is what a page receives."""
    merged = {**_load(DEFAULT_LANGUAGE), **_load(check_language(lang))}
    return {key: value for key, value in merged.items() if key.startswith(prefixes or ("",))}


def text(lang: str, key: str, **values: object) -> str:
    """The message `key` in `lang` (else in English, else the key itself) with its
    placeholders filled from `values`; a placeholder without a value stays as {name}. A
    whole number may choose a noun's number: "{epochs} {epochs:epoch|epochs}"."""
    code = lang if lang in LANGUAGES else DEFAULT_LANGUAGE
    template = _load(code).get(key, _load(DEFAULT_LANGUAGE).get(key, key))
    return _FILLER.vformat(template, (), values)


def placeholders(template: str) -> set[str]:
    """The {name} placeholders of a message (to check that translations keep them)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def number(value: float, lang: str, digits: int = 0) -> str:
    """`value` with `digits` decimals and grouped thousands, as `lang` writes numbers."""
    written = f"{value:,.{digits}f}"
    thousands, decimal = text(lang, "number.thousands"), text(lang, "number.decimal")
    return written.replace(",", "\0").replace(".", decimal).replace("\0", thousands)


def percent(fraction: float, lang: str, digits: int = 1) -> str:
    """A fraction (0.0153) as a percentage ("1.5%") the way `lang` writes one."""
    return text(lang, "number.percent", value=number(100 * fraction, lang, digits))


def choose_language(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The supported language a browser prefers most, from its Accept-Language header
    ("ko-KR,ko;q=0.9,en;q=0.8" → "ko"); `default` when it names none of LANGUAGES."""
    ranked = []
    for position, item in enumerate((accept_language or "").split(",")):
        tag, _, parameters = item.partition(";")
        match = LANGUAGE_TAG.match(tag)
        if not match:
            continue
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        code = match.group(1).lower()
        if code in LANGUAGES and quality > 0:
            ranked.append((-quality, position, code))
    return min(ranked)[2] if ranked else default
