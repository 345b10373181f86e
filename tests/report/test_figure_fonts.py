"""The lecture's figures in the report's language (issue 16): a Korean figure's words are
Korean, drawn with a font that has Hangul, and without such a font the figure is English."""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from matplotlib.text import Text

from convnet.report import claims_plots, figure_fonts, plots
from tests.helpers.figure_data import (
    cost_result,
    feature_map_result,
    invariance_result,
    shift_result,
)

FIGURES = {
    "shift": lambda lang: claims_plots.shift_figure(shift_result(), Path("unused.png"), lang=lang),
    "feature maps": lambda lang: claims_plots.feature_map_figure(
        feature_map_result(), Path("unused.png"), lang=lang
    ),
    "invariance": lambda lang: claims_plots.invariance_curves(
        invariance_result(test_subset=2_000, train_subset=500), Path("unused.png"), lang=lang
    ),
    "cost": lambda lang: claims_plots.cost_bars(cost_result(), Path("unused.png"), lang=lang),
}
HANGUL = re.compile("[\uac00-\ud7a3]")
LATIN_WORD = re.compile(r"[A-Za-zµ][A-Za-z0-9_µ+-]*")
# Latin words a Korean figure may show: model and layer names, the data set, units, the
# device and precision, and an exponent (0.0e+00).
KOREAN_FIGURE_LATIN = re.compile(r"lenet5|mlp(_60k)?|c1|MNIST|px|KiB|µs|cpu|CPU|fp32|e[+-]\d+")


def hangul_font_files() -> list[str]:
    """The system's font files with Hangul, looked at without matplotlib's font cache."""
    found = []
    for path in font_manager.findSystemFonts():
        try:
            if FT2Font(path).get_char_index(ord("한")):
                found.append(path)
        except (OSError, RuntimeError, ValueError):
            continue
    return found


needs_korean_font = pytest.mark.skipif(
    not hangul_font_files(), reason="no Korean font installed (make system-packages: fonts-nanum)"
)


@pytest.fixture
def saved(monkeypatch):
    """The figures the functions save, written to memory as PNG (where a missing glyph
    warns) and kept open to be inspected."""
    figures = []

    def save(figure, path):
        figure.savefig(io.BytesIO(), format="png", dpi=50)
        figures.append(figure)
        return Path(path)

    monkeypatch.setattr(claims_plots, "save_figure", save)
    yield figures
    for figure in figures:
        plots.plt.close(figure)


def texts(figure) -> list[str]:
    """Every string drawn: titles, axis labels, tick labels, legend entries, annotations."""
    return [text.get_text() for text in figure.findobj(Text) if text.get_text().strip()]


@needs_korean_font
@pytest.mark.parametrize("name", FIGURES)
def test_korean_figures_are_korean_and_every_glyph_is_drawn(name, saved):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Glyph … missing from font(s)" fails the test
        FIGURES[name]("ko")
    (figure,) = saved
    words = texts(figure)
    assert any(HANGUL.search(text) for text in words), words
    english = [
        word
        for text in words
        for word in LATIN_WORD.findall(text)
        if not KOREAN_FIGURE_LATIN.fullmatch(word)
    ]
    assert english == [], english
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert all(HANGUL.search(title) for title in [*titles, figure.get_suptitle()] if title)


@pytest.mark.parametrize("name", FIGURES)
def test_english_figures_have_no_hangul_and_need_no_other_font(name, saved):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        FIGURES[name]("en")
    (figure,) = saved
    assert not any(HANGUL.search(text) for text in texts(figure))
    assert figure_fonts.font_settings("en") == {}


@needs_korean_font
def test_korean_subset_titles_say_how_many_of_how_many(saved):
    FIGURES["invariance"]("ko")
    title = saved[0].get_suptitle()
    assert "10,000개 중 2,000개" in title and "60,000개 중 500개" in title, title


@needs_korean_font
def test_the_korean_font_is_found_and_has_hangul():
    settings = figure_fonts.font_settings("ko")
    assert settings is not None, "a Korean font is installed but was not found"
    *latin, korean = settings["font.family"]
    assert latin  # the default font stays first: Latin letters and digits from it
    path = font_manager.findfont(
        font_manager.FontProperties(family=korean), fallback_to_default=False
    )
    assert figure_fonts.has_glyphs(path, "컨볼루션 풀링 특징 맵 가중치 공유 정확도")


def test_a_machine_without_a_system_korean_font_uses_the_one_pip_installed(monkeypatch):
    """koreanize-matplotlib, a dependency in pyproject.toml, brings NanumGothic: a fresh
    machine gets a Korean font from `pip install` alone, without fonts-nanum."""
    bundled = figure_fonts.bundled_font_files()
    assert bundled and all(figure_fonts.has_glyphs(path, "한국어") for path in bundled[:1])
    without_hangul = [
        entry
        for entry in font_manager.fontManager.ttflist
        if not figure_fonts.has_glyphs(entry.fname, "한")
    ]
    monkeypatch.setattr(font_manager.fontManager, "ttflist", without_hangul)
    monkeypatch.setattr(font_manager, "findSystemFonts", lambda *args, **kwargs: [])
    figure_fonts.font_settings.cache_clear()
    try:
        settings = figure_fonts.font_settings("ko")
        assert settings is not None
        chosen = settings["font.family"][-1]
        paths = {entry.fname for entry in font_manager.fontManager.ttflist if entry.name == chosen}
        assert paths and paths <= set(bundled)
    finally:
        figure_fonts.font_settings.cache_clear()


def test_without_a_korean_font_the_figure_is_english_and_says_so_once(saved, monkeypatch):
    monkeypatch.setattr(figure_fonts, "font_settings", lambda lang: {} if lang == "en" else None)
    figure_fonts._warn_no_font.cache_clear()
    with pytest.warns(UserWarning, match="fonts-nanum") as warned:
        FIGURES["cost"]("ko")
        FIGURES["shift"]("ko")
    figure_fonts._warn_no_font.cache_clear()
    assert len(warned) == 1, [str(warning.message) for warning in warned]
    assert len(saved) == 2
    for figure in saved:
        words = texts(figure)
        assert words and not any(HANGUL.search(text) for text in words), words
    assert "Time per image" in texts(saved[0])
