"""The whole lecture in Korean (issue 30): every command that writes a page or a figure takes
--lang, its Korean words come from the catalog, and one glossary holds everywhere."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import pytest

from convnet import i18n
from convnet.cli import main
from convnet.report import evolution_plots, figure_fonts, plots, zoo_chart
from tests.helpers.figure_data import evolution_result
from tests.report.test_lecture import visible_text

HANGUL = re.compile("[\uac00-\ud7a3]")
# Latin a Korean run report may show besides the model's registry description and citation
# (quoted as registered): model, layer and layer-type names, the data set, %p, and the field
# terms Korean courses keep (top-5, MAC).
KOREAN_REPORT_LATIN = re.compile(
    r"lenet5|mnist|features|head|[csf]\d|output|Conv2d|Linear|MaxPool2x2|WholeInputConv2d"
    r"|top-5|MAC|p|LeNet-5|LeCun"
)


@pytest.fixture(scope="module")
def korean_run(mnist_dir, tmp_path_factory) -> Path:
    """A tiny lenet5 run whose report is written in Korean."""
    run_dir = tmp_path_factory.mktemp("korean") / "run"
    arguments = ["train", "lenet5", "--epochs", "1", "--train-subset", "600"]
    arguments += ["--test-subset", "300", "--lang", "ko", "--out", str(run_dir), "--json"]
    assert main(arguments) == 0
    return run_dir


def test_the_run_report_of_train_is_korean(korean_run):
    from convnet.models import get_model_spec

    page = (korean_run / "report.html").read_text(encoding="utf-8")
    spec = get_model_spec("lenet5")
    assert page.startswith("<!doctype html><html lang='ko'>")
    for key in ("report.errs", "report.model.title", "report.card.top5", "report.training"):
        assert i18n.text("ko", key) in page, key
    assert re.search(r"\{\w+\}", page) is None
    english = [
        word
        for word in re.findall(
            r"[A-Za-z][A-Za-z0-9_'+-]*",
            visible_text(page).replace(spec.description, "").replace(spec.paper, ""),
        )
        if not KOREAN_REPORT_LATIN.fullmatch(word)
    ]
    assert english == [], english
    for figure in ("curves.png", "per_class.png", "confusion.png"):
        assert (korean_run / "figures" / figure).stat().st_size > 5_000


def test_evaluate_writes_its_report_in_korean(korean_run, tmp_path, capsys):
    out = tmp_path / "report"
    arguments = ["evaluate", str(korean_run), "--test-subset", "200", "--report", str(out)]
    assert main([*arguments, "--lang", "ko", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    page = Path(result["report"]).read_text(encoding="utf-8")
    assert page.startswith("<!doctype html><html lang='ko'>")
    assert i18n.text("ko", "report.evaluation.easy") in page and "혼동 행렬" in page
    assert re.search(r"\{\w+\}", page) is None
    assert main([*arguments, "--lang", "xx"]) == 2
    assert "--lang must be one of en, ko" in capsys.readouterr().err


@pytest.fixture
def drawn(monkeypatch):
    """The figures evolution_plots and zoo_chart would save, kept instead of written."""
    figures = []

    def keep(figure, path):
        figure.canvas.draw()
        figures.append(figure)
        return Path(path)

    for module in (evolution_plots, zoo_chart):
        monkeypatch.setattr(module, "save_figure", keep)
    yield figures
    for figure in figures:
        plots.plt.close(figure)


def texts(figure) -> list[str]:
    from matplotlib.text import Text

    return [text.get_text() for text in figure.findobj(Text) if text.get_text().strip()]


@pytest.mark.skipif(figure_fonts.font_settings("ko") is None, reason="no Korean font")
@pytest.mark.parametrize("name", ["zoo", "evolution"])
def test_the_imagenet_chart_and_the_evolution_figure_in_korean(name, drawn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a glyph missing from the font fails the test
        if name == "zoo":
            zoo_chart.ilsvrc_history_chart(Path("unused.png"), lang="ko")
        else:
            evolution_plots.evolution_figure(evolution_result(), Path("unused.png"), lang="ko")
    (figure,) = drawn
    words = texts(figure)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles and all(HANGUL.search(title) for title in titles), titles
    assert not any("layers" in text or "test error" in text for text in words), words


def test_the_zoo_command_draws_its_chart_in_the_language_asked(tmp_path, capsys):
    charts = {}
    for lang in ("en", "ko"):
        chart = tmp_path / f"{lang}.png"
        assert main(["zoo", "--no-speed", "--plot", str(chart), "--lang", lang, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["plot"] == str(chart)
        charts[lang] = chart.read_bytes()
    assert charts["en"] != charts["ko"]
    assert main(["zoo", "--no-speed", "--plot", str(tmp_path / "x.png"), "--lang", "de"]) == 2


# --- one glossary ----------------------------------------------------------------------

# The lecture's own words first; the word a Korean text must not use beside each.
GLOSSARY = {
    "파라미터": "매개변수",
    "특징 맵": "특성 맵",
    "풀링": "통합",
    "가중치 공유": "가중치 나눔",
    "경우에 따라 다름": "조건부",
    "학습 이미지": "훈련 이미지",
}


def test_the_korean_catalog_keeps_one_glossary():
    korean = i18n.catalog("ko")
    everything = "\n".join(korean.values())
    for word, avoided in GLOSSARY.items():
        assert word in everything, word
        assert avoided not in everything, [k for k, v in korean.items() if avoided in v]
    # 컨볼루션 is the lecture's word; 합성곱, the textbook's, is given once beside it where
    # a reader meets the word first: the page's heading and the lecture report's lead.
    for key in ("page.heading", "lecture.lead"):
        assert "컨볼루션(합성곱)" in korean[key], key
    assert "열의 중심" not in everything  # 열 reads as "column" on a page with rows and columns
