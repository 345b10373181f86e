"""Real photos and real files: digits drawn with any pen on any canvas under uneven light,
EXIF orientation on every image path, every pixel mode Pillow opens, and evaluation of
image folders prepared as `convnet predict` prepares the same files.

Digits are drawn by the tests (tests/digit_drawings.py) and read by the 1-epoch LeNet-5 run
that the whole suite shares (`trained_run`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from digit_drawings import CONDITIONS, draw_digit, with_orientation
from folder_data import make_split_folders, pattern
from PIL import Image

from convnet.cli import main
from convnet.data.folders import decode_image
from convnet.data.images import load_digit, load_photo
from convnet.data.transforms import to_model_input
from convnet.engine.evaluate import predict_logits
from convnet.engine.run import load_run

DIGITS = range(10)


@pytest.fixture(scope="module")
def reader(trained_run):
    """Digit images (PNG bytes) → the predicted classes of the shared MNIST run."""
    loaded = load_run(trained_run[0])

    def read(images: list[bytes]) -> list[int]:
        digits = torch.stack([load_digit(data) for data in images])
        inputs = to_model_input(digits, loaded.input_size)
        logits = predict_logits(
            loaded.model, inputs, loaded.normalization, torch.device("cpu"), "fp32"
        )
        return logits.argmax(1).tolist()

    return read


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("condition", list(CONDITIONS))
def test_drawn_digits_are_read_right(condition, reader):
    """Before this preparation: a 2-px pen read 1 of 10 (all as "1"), light that falls off
    by 20–35% or a shadow 1–4 of 10; a marker 10 of 10."""
    predicted = reader([png(CONDITIONS[condition](digit)) for digit in DIGITS])
    right = sum(p == d for d, p in zip(DIGITS, predicted, strict=True))
    assert right >= 9, f"{condition}: {predicted}"


@pytest.mark.parametrize("digit", [0, 1, 7])
def test_thin_strokes_reach_mnist_contrast_and_width(digit, mnist_test):
    """A 2-px pen on a 600-px canvas comes out as MNIST's digits do: strokes at full
    brightness (255) and as many bright pixels as MNIST test digits of the class have
    (between their 10th and 90th percentile), not a faint hairline."""
    prepared = load_digit(png(draw_digit(digit, 600, 2))).numpy()
    assert prepared.max() == 255
    mnist = mnist_test.images[mnist_test.labels == digit].numpy()
    low, high = np.percentile((mnist > 127).reshape(len(mnist), -1).sum(1), [10, 90])
    assert low <= (prepared > 127).sum() <= high


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_a_digit(orientation, reader):
    upright = Image.fromarray(draw_digit(4, 300, 14)).convert("RGB")
    stored = with_orientation(upright, orientation)
    assert np.array_equal(load_digit(stored).numpy(), load_digit(png(np.asarray(upright))).numpy())
    assert reader([stored]) == [4]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A small run trained on colour photos of five classes (stripes at five angles)."""
    root = tmp_path_factory.mktemp("photos")
    data = make_split_folders(root / "data", 16, 4)
    run_dir = root / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert (
            main(
                [
                    "train",
                    "lenet5",
                    "--data",
                    str(data),
                    "--epochs",
                    "3",
                    "--workers",
                    "0",
                    "--precision",
                    "fp32",
                    "--out",
                    str(run_dir),
                ]
            )
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    return run_dir


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_of_a_photo(orientation, tmp_path):
    """An asymmetric photo stored sideways (or mirrored) with its EXIF tag is seen upright
    by every photo path: prediction, folder evaluation and training."""
    upright = pattern(3, 7, size=48).crop((0, 0, 48, 36))  # 48×36: turning it shows
    upright.paste((255, 0, 0), (0, 0, 12, 6))  # a red mark in one corner
    stored = tmp_path / f"photo{orientation}.png"
    stored.write_bytes(with_orientation(upright, orientation))
    expected = np.asarray(upright.convert("RGB"))
    assert np.array_equal(np.asarray(decode_image(stored)), expected)
    reference = tmp_path / "upright.png"
    upright.save(reference)
    assert torch.equal(
        load_photo(stored.read_bytes(), (3, 32, 32)),
        load_photo(reference.read_bytes(), (3, 32, 32)),
    )


def test_predict_on_a_rotated_photo_gives_the_upright_probabilities(folder_run, tmp_path, capsys):
    upright = pattern(2, 900, size=60)
    upright.save(tmp_path / "upright.png")
    (tmp_path / "sideways.png").write_bytes(with_orientation(upright, 6))
    assert (
        main(
            [
                "predict",
                str(folder_run),
                str(tmp_path / "upright.png"),
                str(tmp_path / "sideways.png"),
                "--precision",
                "fp32",
                "--json",
            ]
        )
        == 0
    )
    first, second = json.loads(capsys.readouterr().out)
    assert first["top"] == second["top"]


def _in_mode(picture: Image.Image, mode: str) -> tuple[Image.Image, str]:
    """`picture` stored in pixel `mode`, and a format that keeps that mode."""
    grey = np.asarray(picture.convert("L"))
    if mode == "I;16":
        return Image.fromarray(grey.astype(np.uint16) * 257), "PNG"
    if mode == "I;16B":
        return Image.frombytes("I;16B", picture.size, (grey.astype(">u2") * 257).tobytes()), "TIFF"
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 257), "TIFF"
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255), "TIFF"
    if mode in ("LA", "PA", "RGBA"):
        return picture.convert(mode), "TIFF" if mode == "PA" else "PNG"
    return picture.convert(mode), {"CMYK": "TIFF", "YCbCr": "TIFF"}.get(mode, "PNG")


MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "I;16", "I;16B", "I", "F", "YCbCr"]


@pytest.mark.parametrize("mode", MODES)
def test_every_pixel_mode_reaches_the_model_with_the_right_values(mode, tmp_path):
    """Each mode decodes to the values of the 8-bit original (exact for 8- and 16-bit grey,
    within rounding for the colour conversions Pillow makes); 16-bit once decoded as white."""
    picture = pattern(1, 3, size=32)
    grey_mode = mode in ("1", "L", "LA", "I;16", "I;16B", "I", "F")
    reference = picture.convert("1" if mode == "1" else "L" if grey_mode else "RGB")
    stored, file_format = _in_mode(reference if grey_mode else picture, mode)
    path = tmp_path / f"image.{file_format.lower()}"
    stored.save(path, format=file_format)
    decoded = np.asarray(decode_image(path), dtype=np.int16)
    # A palette (P, PA), CMYK and YCbCr hold the colours as Pillow converted them, which
    # rounds: the file's own colours are the reference there.
    converted = mode in ("P", "PA", "CMYK", "YCbCr")
    expected = np.asarray(
        stored.convert("RGB") if converted else reference.convert("RGB"), dtype=np.int16
    )
    tolerance = 0 if grey_mode or converted else 2
    assert np.abs(decoded - expected).max() <= tolerance, mode


def test_a_folder_of_every_mode_is_scored_whole(folder_run, tmp_path, capsys):
    """The run's class folders hold the same photo in every mode: all are scored (none
    skipped), each one with the class of its 8-bit original."""
    names = json.loads((folder_run / "config.json").read_text())["classes"]
    data = tmp_path / "modes"
    for label in range(len(names)):
        folder = data / names[label]
        folder.mkdir(parents=True)
        picture = pattern(label, 20_000, size=40)
        for mode in MODES:
            stored, file_format = _in_mode(picture, mode)
            stored.save(
                folder / f"{mode.replace(';', '')}.{file_format.lower()}", format=file_format
            )
        picture.save(folder / "original.png")
    assert (
        main(
            [
                "evaluate",
                str(folder_run),
                "--data",
                str(data),
                "--workers",
                "0",
                "--precision",
                "fp32",
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert result["num_skipped"] == 0 and result["num_examples"] == len(names) * (len(MODES) + 1)


def test_evaluate_prepares_digit_files_as_predict_does(trained_run, mnist_test, tmp_path, capsys):
    """40 MNIST test digits saved as dark-on-white PNG class folders: a digit run scores them
    as `convnet predict` reads them (it once resized and cropped them as photos: 70% error)."""
    data = tmp_path / "digits"
    paths = []
    for index in range(40):
        folder = data / str(int(mnist_test.labels[index]))
        folder.mkdir(parents=True, exist_ok=True)
        digit = np.kron(mnist_test.images[index].numpy(), np.ones((3, 3), dtype=np.uint8))
        Image.fromarray(255 - digit).save(folder / f"{index}.png")
        paths.append(str(folder / f"{index}.png"))
    run_dir = trained_run[0]
    assert (
        main(
            [
                "evaluate",
                str(run_dir),
                "--data",
                str(data),
                "--workers",
                "0",
                "--precision",
                "fp32",
                "--json",
            ]
        )
        == 0
    )
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["preprocessing"]["preparation"] == "digit"
    assert main(["predict", str(run_dir), *paths, "--precision", "fp32", "--json"]) == 0
    predicted = json.loads(capsys.readouterr().out)
    wrong = sum(item["top"][0]["name"] != Path(item["image"]).parent.name for item in predicted)
    assert evaluated["num_examples"] == 40
    assert round(evaluated["top1_error"] * 40) == wrong and wrong <= 2


def _float_round_trip(image: Image.Image) -> np.ndarray:
    """`as_photo`'s general path, spelled out: values in [0, 1], over white, back to 8 bits."""
    from convnet.data.images import oriented, pixel_values

    rgb, alpha = pixel_values(oriented(image))
    if alpha is not None:
        rgb = rgb * alpha[..., None] + (1 - alpha[..., None])
    return np.round(rgb * 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
@pytest.mark.parametrize("orientation", [1, 6])
def test_opaque_8_bit_images_skip_the_float_round_trip_with_the_same_pixels(
    mode, orientation, tmp_path
):
    """A JPEG photo (RGB or greyscale, opaque) is returned as decoded, without converting to
    float and back: the pixels are exactly those of the general path, upright."""
    from convnet.data.images import as_photo

    rng = np.random.default_rng(orientation)
    picture = Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).convert(mode)
    if mode == "RGBA":  # some see-through pixels
        picture.putalpha(Image.fromarray(rng.integers(0, 256, (30, 40), dtype=np.uint8)))
    file_format = "JPEG" if mode in ("RGB", "L") else "PNG"
    path = tmp_path / f"photo.{file_format.lower()}"
    path.write_bytes(with_orientation(picture, orientation, format=file_format))
    with Image.open(path) as stored:
        stored.load()
        expected = _float_round_trip(stored)
        photo = as_photo(stored)
    assert photo.mode == "RGB" and photo.size == (expected.shape[1], expected.shape[0])
    assert np.array_equal(np.asarray(photo), expected)
    assert np.array_equal(np.asarray(decode_image(path)), expected)
