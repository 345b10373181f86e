"""`convnet explain`: overlays written for digit files, and mistakes that exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from convnet.analysis.explain import explain
from convnet.data.images import load_digit
from convnet.data.transforms import to_model_input
from convnet.models import get_model
from tests.helpers.cli import run_in_process
from tests.helpers.images import digit_png

pytest.importorskip("captum")

DIGITS = 50  # the first test digits, whatever they are


@pytest.fixture(scope="module")
def lenet_and_digits(trained_run, mnist_test):
    from convnet.engine.run import Run

    loaded = Run(trained_run[0]).load()
    pixels = to_model_input(mnist_test.images[:DIGITS], loaded.input_size)
    return loaded, pixels


def test_explain_writes_overlays(trained_run, lenet_and_digits, mnist_test, tmp_path, capfd):
    """The command on three digit files: one decodable PNG each, the right prediction, and
    the peak of the map the library gives for the same prepared input."""
    run_dir, _ = trained_run
    loaded, _ = lenet_and_digits
    paths = [
        str(digit_png(mnist_test, index, tmp_path / f"digit{index}.png")) for index in range(3)
    ]
    pixels = to_model_input(torch.stack([load_digit(path) for path in paths]), (1, 32, 32))
    for method in ("gradcam", "saliency", "occlusion"):
        expected = explain(loaded.model, pixels, loaded.normalization, method, spec=loaded.spec)
        out = tmp_path / "overlays"
        document = json.loads(
            run_in_process(
                capfd,
                "explain",
                str(run_dir),
                *paths,
                "--method",
                method,
                "--out",
                str(out),
                "--json",
                check=True,
            ).stdout
        )
        assert [item["image"] for item in document] == paths
        assert {item["preparation"] for item in document} == {"digit"}
        for index, item in enumerate(document):
            assert item["predicted"]["name"] == str(int(mnist_test.labels[index]))
            assert item["target"] == {key: item["predicted"][key] for key in ("index", "name")}
            with Image.open(item["out"]) as overlay:
                overlay.load()
                assert overlay.format == "PNG" and min(overlay.size) >= 200
            row, column = item["peak"]  # the peak of the map the library computes
            assert expected.maps[index, row, column] >= 0.99, (method, index, item["peak"])
    targeted = json.loads(
        run_in_process(
            capfd,
            "explain",
            str(run_dir),
            paths[0],
            "--target",
            "3",
            "--out",
            str(tmp_path),
            "--json",
            check=True,
        ).stdout
    )
    assert targeted[0]["target"] == {"index": 3, "name": "3"}


def test_explain_mistakes_exit_2(trained_run, mnist_test, tmp_path, capfd):
    run_dir, _ = trained_run
    digit = str(digit_png(mnist_test, 0, tmp_path / "digit.png"))
    weights = str(run_dir / "model.safetensors")

    def refused(*arguments, phrase):
        result = run_in_process(capfd, "explain", *arguments, "--out", str(tmp_path / "out"))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert phrase in result.stderr, result.stderr

    refused(str(run_dir), digit, "--target", "eleven", phrase="--target eleven")
    refused(str(run_dir), digit, "--method", "lime", phrase="lime")
    refused(str(run_dir), str(tmp_path / "missing.png"), phrase="no such file")
    refused(str(tmp_path / "nowhere"), digit, phrase="does not exist")
    refused("lenet5", digit, phrase="--weights")
    refused("lenet5", "--weights", weights, digit, "--layer", "features.c9", phrase="c9")
    save_file(get_model("mlp").state_dict(), tmp_path / "mlp.safetensors")
    refused("mlp", "--weights", str(tmp_path / "mlp.safetensors"), digit, phrase="saliency")


def test_explain_titles_its_overlays_in_the_language_asked(
    trained_run, mnist_test, tmp_path, capfd, monkeypatch
):
    from convnet.report import explanation_figure

    titles = []
    write = explanation_figure.write_overlay
    monkeypatch.setattr(
        explanation_figure,
        "write_overlay",
        lambda *args, **kwargs: titles.append((args[3], kwargs["lang"])) or write(*args, **kwargs),
    )
    run_dir, _ = trained_run
    path = str(digit_png(mnist_test, 0, tmp_path / "digit.png"))  # a 7
    for lang in ("en", "ko"):
        run_in_process(
            capfd, "explain", str(run_dir), path, "--target", "3", "--lang", lang,
            "--out", str(tmp_path / lang), check=True,
        )  # fmt: skip
    (english, _), (korean, drawn) = titles
    assert "Grad-CAM on features.c3" in english and "explaining class 3" in english
    if drawn == "ko":  # a font with Hangul: koreanize-matplotlib's, at least
        assert "features.c3의 Grad-CAM" in korean and "설명한 클래스: 3" in korean
    assert run_in_process(capfd, "explain", str(run_dir), path, "--lang", "fr").returncode == 2
