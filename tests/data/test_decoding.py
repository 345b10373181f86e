"""The one decoder (convnet/data/decoding.py) and the preparations' bounds
(convnet/data/preparation.py): every format Pillow and pillow-heif open, judged by content;
large JPEGs decoded reduced; limits on declared and decoded pixels, each refused in one
paragraph before decoding; extreme aspect ratios cut before they are resized."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data.decoding import (
    MAX_DECLARED_PIXELS,
    MAX_DECODED_PIXELS,
    image_extensions,
    open_image,
)
from convnet.data.preparation import BoundedAspect, decode_image, load_photo, photo_transform
from convnet.errors import UserError
from tests.helpers.images import ODD_FORMATS, colour_photo, png_header_only, save_as


@pytest.mark.parametrize(("name", "kind", "options"), ODD_FORMATS)
def test_every_format_is_read_by_its_content(name, kind, options, tmp_path):
    picture = colour_photo()
    path = tmp_path / name
    save_as(picture, path, kind, **options)
    decoded = decode_image(path)
    assert decoded.mode == "RGB" and decoded.size == picture.size
    # lossy formats stay near the colours; the GIF is its first frame, not the black second
    difference = np.abs(np.asarray(decoded, int) - np.asarray(picture, int)).mean()
    assert difference < 12, (name, difference)


def test_the_extensions_taken_without_opening_include_the_odd_formats():
    endings = image_extensions()
    for ending in (".avif", ".jfif", ".heic", ".webp", ".gif", ".tif", ".jpeg", ".png"):
        assert ending in endings, ending


def big_jpeg(path, width: int, height: int) -> None:
    picture = Image.new("RGB", (width, height), (90, 140, 200))
    picture.paste((240, 220, 10), (width // 4, height // 4, width // 2, height // 2))
    picture.save(path, quality=85)


def test_a_large_jpeg_is_decoded_reduced_to_what_the_preparation_needs(tmp_path):
    path = tmp_path / "large.jpg"
    big_jpeg(path, 8000, 7500)  # 60 megapixels: more than is ever decoded whole
    started = time.perf_counter()
    image = open_image(path, keep=256)
    assert image.size == (1000, 938)  # by 8, the JPEG decoder's own scaling: ≥ 256 kept
    assert image.getpixel((400, 400)) == pytest.approx((240, 220, 10), abs=6)
    assert open_image(path, keep=2000).size == (4000, 3750)  # by 2 only: 2,000 kept
    assert time.perf_counter() - started < 20
    with pytest.raises(UserError, match=f"more than {MAX_DECODED_PIXELS:,}"):
        open_image(path)  # nothing reduces it: 60 MP decoded whole is refused
    prepared = load_photo(path, (3, 224, 224))
    assert prepared.shape == (3, 224, 224)


def test_a_moderate_jpeg_is_decoded_whole_as_torchvision_reads_it(tmp_path):
    path = tmp_path / "camera.jpg"
    big_jpeg(path, 4000, 3000)  # 12 MP: below FULL_DECODE_PIXELS
    assert open_image(path, keep=256).size == (4000, 3000)


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (8_000, f"more than {MAX_DECODED_PIXELS:,}, the most convnet decodes"),  # 64 MP PNG
        (20_000, f"{MAX_DECLARED_PIXELS:,}"),  # 400 MP: Pillow's decompression-bomb limit
    ],
)
def test_a_png_declaring_too_many_pixels_is_refused_before_decoding(side, message):
    with pytest.raises(UserError, match=message) as error:
        open_image(png_header_only(side, side), "huge.png")
    assert "Refusing to decode it" in str(error.value)


@pytest.mark.parametrize("size", [(1, 8000), (8000, 1), (3, 20000), (40, 2000)])
def test_extreme_aspect_ratios_are_cut_before_they_are_resized(size):
    picture = Image.new("RGB", size, (10, 200, 10))
    cut = BoundedAspect()(picture)
    assert max(cut.size) <= 32 * min(cut.size)
    started = time.perf_counter()
    prepared = photo_transform((3, 224, 224))(picture)
    assert prepared.shape == (3, 224, 224) and time.perf_counter() - started < 5
    assert torch.allclose(prepared[1], torch.full((224, 224), 200 / 255), atol=0.01)


def test_an_ordinary_aspect_is_resized_as_before():
    picture = colour_photo(size=(500, 375))
    assert BoundedAspect()(picture) is picture


# --- what tools/fuzz.py found in the new readers: each was a crash -------------------------

# The smallest crashing input of each kind (base64): a TIFF without dimensions (TypeError
# inside Pillow), an AVIF whose colour planes fail (RuntimeError), a zip whose directory
# points before its start (ValueError: negative seek).
FOUND_BY_THE_FUZZER = {
    "image": (
        "SUkqAAgAAAAKAAABBAABAAAAIQAAAAEBBAABAAAALAAAAAIBAwABAAAAIAAAAAMBAwABAAAAAQAAAAYBAwAB"
        "AAAAAQAAABEBBAABAAAAhgAAABYBBAABAAAALAAAABcBBAABALqioh68sJRzZeJtnPNNoakRPI57U34DflEb"
        "0WiQi6TDYYlKpm3Et4rDLwAAsBYAABwBAwABAAAA"
    ),
    "photo": (
        "AAAAIGZ0eXBhdmlmAAAAAGF2aWZtaWYxbWlhZk1BMUIAAADrbWV0YQAAAAAAAAAhaGRscgAAAAAAAAAAcGlj"
        "dAAAAAAAAAAAAAAAAAAAAAAOcGl0bQAAAAAAAQAAAB5hbG9jAAAAAEQAAAEAAQAAAAEAAAETAAAARgAAAChp"
        "aW5mAAAAAAABAAAAGmluZmUCAAAAAAEAAGF2MDFDb2xvcgAAAABqaXBycAAAAEtpcGNvAAAAFGlzcGUAAAAA"
        "AAAAHwAAAB8AAAAQcGl4aQAAAAADCAgIAAAADGF2MUOBAAwAAAAAE2NvbHJuY2x4AAEADQAGgAAAABdpcG1h"
        "AAAAAAAAAAEAAQQBAoMEAAAATm1kYXQSAAoJGBE95ogIaDQgMjdFMeHhmUCCCCeUAAACyD5svHBuoz1DOm4s"
        "8uTT7O95zH+cVxEDHGGZyc+A8QmuxpBhPg0udg/i"
    ),
    "archive": (
        "UEsDBBYAAAAIANauhl1o8gHhAwAAAAEAAAARAAAAZGF0YV9iYVRjaF8xLmJpbssFAFBLAQIUAxQAAAAIANau"
        "hl1o8gHhA0AAAAEAAAAQAAAAAAAAAAAAAACAAQAAAABkYXRhX2JhdGNoXzEuYmluUEsFBgAAAAABAAEAPgAA"
        "ADEBAAAAAA=="
    ),
}


@pytest.mark.parametrize("kind", list(FOUND_BY_THE_FUZZER))
def test_inputs_the_fuzzer_found_are_refused_cleanly(kind):
    import base64

    from convnet.data.cifar import read_archive

    data = base64.b64decode(FOUND_BY_THE_FUZZER[kind])
    with pytest.raises(UserError):
        if kind == "archive":
            read_archive(data, {"data_batch_1.bin": 4096}, "found.zip")
        else:
            decode_image(data)
