"""Fonts for figures drawn in the catalogs' languages.

matplotlib's default font (DejaVu Sans) has no Hangul, so a Korean figure names a second
font with the glyphs its text needs; matplotlib draws each glyph from the first font of the
`font.family` list that has it (Latin and digits from the default, Hangul from the second).
A font installed after matplotlib built its font cache is missing from that cache, so the
system's font files are looked at once more, and then the fonts that come with the
project's own dependencies (NanumGothic, shipped by koreanize-matplotlib, which `pip install`
brings to any machine). When still no font has the glyphs (the dependency removed, no system
font), the figure is drawn in English instead, with one warning per language: English words
are better than rows of empty boxes.
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Callable
from functools import cache, wraps
from pathlib import Path

from matplotlib import font_manager, rc_context, rcParams
from matplotlib.ft2font import FT2Font

from convnet import i18n

# Fonts known to have Hangul, tried first (Debian's fonts-nanum, Noto CJK, Windows, macOS).
PREFERRED_FONTS = (
    "NanumGothic",
    "NanumBarunGothic",
    "Noto Sans CJK KR",
    "Noto Sans KR",
    "Source Han Sans KR",
    "Malgun Gothic",
    "Apple SD Gothic Neo",
    "AppleGothic",
)
# matplotlib's Last Resort font has a box for every character: the glyphs exist, the
# letters do not.
PLACEHOLDER_FONTS = ("Last Resort",)


def has_glyphs(path: str, text: str) -> bool:
    """Whether the font file at `path` has a glyph for every visible character of `text`."""
    try:
        font = FT2Font(path)
    except (OSError, RuntimeError, ValueError):
        return False
    return all(font.get_char_index(ord(character)) for character in text if not character.isspace())


def _font_with(text: str) -> str | None:
    """The family name of a known font that has every glyph of `text`, preferred ones first."""
    entries = [
        entry
        for entry in font_manager.fontManager.ttflist
        if not entry.name.startswith(PLACEHOLDER_FONTS)
    ]
    rank = {name: position for position, name in enumerate(PREFERRED_FONTS)}
    entries.sort(key=lambda entry: rank.get(entry.name, len(rank)))
    return next((entry.name for entry in entries if has_glyphs(entry.fname, text)), None)


# The package whose font files the figures may use; never imported (its import sets
# matplotlib's font for the whole process), only its files read.
FONT_PACKAGE = "koreanize_matplotlib"


def bundled_font_files() -> list[str]:
    """The font files (TrueType) that FONT_PACKAGE installed, found without importing it."""
    try:
        spec = importlib.util.find_spec(FONT_PACKAGE)
    except (ImportError, ValueError):
        return []
    folders = list(spec.submodule_search_locations or []) if spec else []
    return sorted(str(path) for folder in folders for path in Path(folder).glob("fonts/*.ttf"))


def _register(paths: list[str]) -> None:
    """Add font files that matplotlib's font list does not hold yet."""
    known = {entry.fname for entry in font_manager.fontManager.ttflist}
    for path in paths:
        if path not in known:
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):
                continue


@cache
def font_settings(lang: str) -> dict | None:
    """matplotlib settings that draw `lang`'s text: {} when the default font has its glyphs,
    a font.family list ending in a font that has them, or None when no installed font has."""
    sample = i18n.text(lang, i18n.LANGUAGE_NAME)  # each language's name, in its own script
    default = font_manager.findfont(font_manager.FontProperties(family=rcParams["font.family"]))
    if has_glyphs(default, sample):
        return {}
    found = _font_with(sample)
    for more_fonts in (font_manager.findSystemFonts, bundled_font_files):
        if found is None:
            _register(more_fonts())
            found = _font_with(sample)
    return None if found is None else {"font.family": [*rcParams["font.family"], found]}


@cache
def _warn_no_font(lang: str) -> None:
    warnings.warn(
        f"No installed font has the letters of {i18n.text(lang, i18n.LANGUAGE_NAME)}; "
        f"figures are drawn in English (install a font such as fonts-nanum for Korean).",
        stacklevel=3,
    )


def figure_language(lang: str) -> tuple[str, dict]:
    """The language a figure is drawn in and the matplotlib settings for its font: `lang`
    when a font has its glyphs, else English (warning once)."""
    lang = i18n.check_language(lang)
    settings = font_settings(lang)
    if settings is None:
        _warn_no_font(lang)
        return i18n.DEFAULT_LANGUAGE, {}
    return lang, settings


def drawn_in_language(draw: Callable) -> Callable:
    """Decorate a figure function taking `lang`: it is called with the language the figure
    can be drawn in, and draws and saves with that language's font."""

    @wraps(draw)
    def in_language(*args, lang: str = i18n.DEFAULT_LANGUAGE, **kwargs):
        drawn, settings = figure_language(lang)
        with rc_context(settings):
            return draw(*args, lang=drawn, **kwargs)

    return in_language
