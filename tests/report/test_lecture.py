"""The lecture report end to end on a small subset, in English and Korean."""

import html
import json
import re
import warnings

import pytest

from convnet.cli import main
from convnet.report import figure_fonts
from tests.helpers.cli import cli


@pytest.mark.slow
def test_lecture_report_end_to_end(mnist_dir, tmp_path, capsys):
    out, runs = tmp_path / "lecture" / "lecture.html", tmp_path / "runs"
    brief = (
        "--epochs",
        "1",
        "--train-subset",
        "300",
        "--test-subset",
        "100",
        "--runs-dir",
        str(runs),
    )
    assert cli(
        capsys, "report", "lecture", "--out", str(out), *brief, "--repeats", "2"
    ).strip() == str(out)
    page = out.read_text()
    positions = [page.index(f"<h2>Claim {n}</h2>") for n in range(1, 9)]
    assert positions == sorted(positions)
    assert "brief training: 1 epoch on the first 300 training images" in page
    assert page.count("class='verdict'") == 8
    # 300 images train no network to the floor: the claims that compare networks give no verdict
    sections = {n: page[page.index(f"<h2>Claim {n}</h2>") :] for n in range(1, 9)}
    for number in (1, 3, 5):
        verdict = sections[number].split("class='verdict'")[1].split("</p>")[0]
        assert ">not judged</span> the networks are undertrained (" in verdict, verdict
        assert "convnet report lecture --epochs 3 --train-subset 0 --runs-dir" in verdict
    assert ">supported</span>" in sections[2].split("<h2>Claim 3</h2>")[0]  # not gated
    for figure in ("shift.png", "feature_maps.png", "invariance.png", "cost.png"):
        assert (out.parent / "lecture_figures" / figure).stat().st_size > 5_000
        assert f"lecture_figures/{figure}" in page

    # The invariance command reuses the runs the report trained (same configuration).
    reused = json.loads(
        cli(
            capsys,
            "experiment",
            "invariance",
            "--epochs",
            "1",
            "--train-subset",
            "300",
            "--test-subset",
            "100",
            "--runs-dir",
            str(runs),
            "--reuse-only",
            "--distortions",
            "translate_x",
            "--json",
        )
    )
    assert all(variant["reused"] for variant in reused["variants"])
    assert len(reused["variants"]) == 12 and reused["curves"][0]["levels"][0] == -6
    assert {row["distortion"] for row in reused["gaps"]} == {"translate_x"}

    # The same page in Korean, from the same runs (reused, not trained again).
    korean = out.parent.parent / "ko" / "lecture.html"
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Glyph")  # no Hangul drawn as an empty box
        cli(
            capsys,
            "report",
            "lecture",
            "--lang",
            "ko",
            "--out",
            str(korean),
            *brief,
            "--repeats",
            "2",
        )
    check_korean_page(korean.read_text(encoding="utf-8"))
    if figure_fonts.font_settings("ko") is not None:  # else drawn in English, by design
        for figure in (
            "shift.png",
            "feature_maps.png",
            "invariance.png",
        ):  # same data, Korean words
            drawn = [folder / "lecture_figures" / figure for folder in (out.parent, korean.parent)]
            assert drawn[0].read_bytes() != drawn[1].read_bytes(), figure
    assert re.search(r"\{\w+\}", page) is None  # every placeholder filled in English too
    assert re.search(r"\blecture\.[a-z_]+\.", visible_text(page)) is None  # no key unfound


# Latin words a Korean page may show: model and network names, data sets, layer names, units,
# the citation, and the few field terms Korean courses keep in English.
KOREAN_PAGE_LATIN = re.compile(
    r"lenet5(_1998)?|mlp(_60k)?|alexnet|googlenet|vgg\d+(_bn)?|resnet\d+|LeNet-5|AlexNet|VGG"
    r"|GoogLeNet|ResNet|ImageNet|MNIST|CNN|ReLU|top-5|[CSF]\d|KiB|px|cpu|fp32|e[+-]\d+"
    r"|LeCun|et|al|Proc|IEEE|CPU|RBF|LeNet-4|I|II-B|III-C|p"  # p: %p, percentage points
)


def visible_text(page: str) -> str:
    """What a reader sees of a page, less its code (commands, run folders, layer names)."""
    body = re.sub(r"<(style|code)>.*?</\1>", " ", page, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", body))


def check_korean_page(page: str) -> None:
    from convnet.i18n import text

    assert page.startswith("<!doctype html><html lang='ko'>")
    positions = [
        page.index(f"<h2>{text('ko', 'lecture.claim_heading', number=n)}</h2>") for n in range(1, 9)
    ]
    assert positions == sorted(positions)
    for n in range(1, 9):
        assert html.escape(text("ko", f"lecture.claim.{n}")) in page
    sections = page.split("<section>")[1:]
    not_judged = f">{text('ko', 'lecture.verdict.not_judged')}</span>"
    withheld = {n for n, section in enumerate(sections, 1) if not_judged in section}
    assert {1, 3, 5} <= withheld <= {1, 3, 5, 6}  # 6: times on a busy machine
    assert f">{text('ko', 'lecture.verdict.supported')}</span>" in sections[1]  # claim 2
    assert "convnet report lecture --epochs 3 --train-subset 0 --runs-dir" in sections[0]
    assert text("ko", "lecture.variants.reused") in page.split("<section>")[0]
    assert re.search(r"\{\w+\}", page) is None  # every placeholder filled
    english = [
        word
        for word in re.findall(r"[A-Za-z][A-Za-z0-9_+-]*", visible_text(page))
        if not KOREAN_PAGE_LATIN.fullmatch(word)
    ]
    assert english == [], english


def test_the_lecture_report_refuses_an_unknown_language(capsys):
    assert main(["report", "lecture", "--lang", "xx"]) == 2
    error = capsys.readouterr().err
    assert "--lang must be one of en, ko" in error and "'xx'" in error
