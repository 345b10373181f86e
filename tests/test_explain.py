"""`convnet explain`: for a trained LeNet-5 each method's heat lies on the digit's strokes,
Grad-CAM's map is placed where C3's cells look, the overlays decode, mistakes exit 2."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli
from PIL import Image
from safetensors.torch import save_file
from test_cli import digit_png
from torch.nn import functional as F

from convnet.analysis.explain import cell_centres, explain, peaks
from convnet.data.images import load_digit
from convnet.data.transforms import to_model_input
from convnet.errors import UserError
from convnet.models import get_model

pytest.importorskip("captum")

DIGITS = 50  # the first test digits, whatever they are
INK = 0.5  # a stroke pixel: brighter than half the full ink
# Near a stroke: within 3 px of an ink pixel. Grad-CAM's map on C3 has one value per 2 px,
# each from a 14×14-px window; saliency and occlusion are finer (see docs/explain.md).
NEAR = 3


def near_ink(pixels: torch.Tensor, reach: int) -> torch.Tensor:
    """(N, H, W) True within `reach` px (a square) of a stroke pixel of `pixels` (N, 1, H, W)."""
    ink = (pixels[:, 0] > INK).float()[:, None]
    return F.max_pool2d(ink, 2 * reach + 1, stride=1, padding=reach)[:, 0] > 0


@pytest.fixture(scope="module")
def lenet_and_digits(trained_run, mnist_test):
    from convnet.engine.run import Run

    loaded = Run(trained_run[0]).load()
    pixels = to_model_input(mnist_test.images[:DIGITS], loaded.input_size)
    return loaded, pixels


@pytest.mark.parametrize("method", ["gradcam", "saliency", "occlusion"])
def test_the_heat_lies_on_the_strokes(lenet_and_digits, mnist_test, method):
    loaded, pixels = lenet_and_digits
    explanation = explain(loaded.model, pixels, loaded.normalization, method, spec=loaded.spec)
    assert explanation.maps.shape == (DIGITS, 32, 32)
    assert (explanation.predicted == mnist_test.labels[:DIGITS]).float().mean() >= 0.9
    assert explanation.layer == ("features.c3" if method == "gradcam" else None)
    rows, columns = peaks(explanation.maps).T
    region = near_ink(pixels, NEAR)
    on_strokes = region[torch.arange(DIGITS), rows, columns]
    assert on_strokes.float().mean() >= 0.8, on_strokes.logical_not().nonzero().flatten()
    # and most of the heat: the share of its mass near the strokes is well above that region's
    # share of the image
    mass = (explanation.maps * region).sum(dim=(1, 2)) / explanation.maps.sum(dim=(1, 2))
    area = region.float().mean(dim=(1, 2))
    assert (mass / area).mean() >= 1.5


def test_gradcam_cells_are_placed_where_they_look():
    """C3's 10×10 cells on a 32×32 input: cell i sees pixels 2i … 2i + 13 (centre 2i + 6.5)."""
    model = get_model("lenet5").eval()
    centres = cell_centres(model, model.features.c3, (1, 32, 32))
    assert centres.tolist() == [[6.5, 2.0], [6.5, 2.0]]
    stride_two = get_model("resnet_mini").eval()  # padded 3×3 convolutions, stride 2: stage 2
    centres = cell_centres(stride_two, stride_two.features.stage2_block1.conv1, (1, 32, 32))
    assert centres[:, 1].tolist() == [2.0, 2.0]


def test_explain_writes_overlays(trained_run, lenet_and_digits, mnist_test, tmp_path):
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
            run_cli(
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
        for index, item in enumerate(document):
            assert item["predicted"]["name"] == str(int(mnist_test.labels[index]))
            assert item["target"] == {key: item["predicted"][key] for key in ("index", "name")}
            with Image.open(item["out"]) as overlay:
                overlay.load()
                assert overlay.format == "PNG" and min(overlay.size) >= 200
            row, column = item["peak"]  # the peak of the map the library computes
            assert expected.maps[index, row, column] >= 0.99, (method, index, item["peak"])
    targeted = json.loads(
        run_cli(
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


def test_explain_mistakes_exit_2(trained_run, mnist_test, tmp_path):
    run_dir, _ = trained_run
    digit = str(digit_png(mnist_test, 0, tmp_path / "digit.png"))
    weights = str(run_dir / "model.safetensors")

    def refused(*arguments, phrase):
        result = run_cli("explain", *arguments, "--out", str(tmp_path / "out"))
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


def test_gradcam_is_refused_for_a_network_without_convolutions():
    with pytest.raises(UserError, match="saliency"):
        explain(get_model("mlp"), torch.zeros(1, 1, 32, 32), (0.0, 1.0), "gradcam")
    assert explain(
        get_model("mlp"), torch.rand(1, 1, 32, 32), (0.0, 1.0), "saliency"
    ).maps.shape == (1, 32, 32)
