"""Preparing a user's image the way MNIST was prepared (20×20 box, centre of mass)."""

import io

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data.images import load_digit
from convnet.errors import UserError


def png_bytes(array: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def big_digit(mnist_test, index: int, scale: int = 5, dark_on_light: bool = True) -> np.ndarray:
    digit = mnist_test.images[index].numpy()
    digit = np.kron(digit, np.ones((scale, scale), dtype=np.uint8))
    digit = np.pad(digit, ((37, 11), (60, 20)))  # off-centre, non-square canvas
    return 255 - digit if dark_on_light else digit


def test_polarity_and_size_do_not_matter(mnist_test):
    light_on_dark = load_digit(png_bytes(big_digit(mnist_test, 0, dark_on_light=False)))
    dark_on_light = load_digit(png_bytes(big_digit(mnist_test, 0, dark_on_light=True)))
    assert torch.equal(light_on_dark, dark_on_light)
    assert light_on_dark.shape == (28, 28) and light_on_dark.dtype == torch.uint8


def test_box_is_20_pixels_and_mass_is_centred(mnist_test):
    digit = load_digit(png_bytes(big_digit(mnist_test, 3))).float()
    rows, columns = torch.nonzero(digit > 25, as_tuple=True)
    assert max(rows.max() - rows.min(), columns.max() - columns.min()) + 1 in (19, 20, 21)
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    centre = ((ys * digit).sum() / digit.sum(), (xs * digit).sum() / digit.sum())
    assert abs(centre[0] - 13.5) < 1.0 and abs(centre[1] - 13.5) < 1.0


def test_colour_and_alpha_images(mnist_test):
    grey = big_digit(mnist_test, 5)
    rgb = np.stack([grey, grey, grey], axis=-1)
    assert torch.equal(load_digit(png_bytes(rgb, "RGB")), load_digit(png_bytes(grey)))
    ink_alpha = 255 - grey  # black strokes on a transparent sheet, as a canvas exports them
    rgba = np.stack([np.zeros_like(grey)] * 3 + [ink_alpha], axis=-1)
    # On a white sheet these strokes are exactly the grey image: every pixel alike.
    assert torch.equal(load_digit(png_bytes(rgba, "RGBA")), load_digit(png_bytes(grey)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not an image", "not a readable image"),
        (png_bytes(np.full((40, 40), 255, np.uint8)), "blank"),
        (png_bytes(np.zeros((1, 1), np.uint8)), "too small"),
    ],
)
def test_bad_images_get_clear_errors(data, message):
    with pytest.raises(UserError, match=message):
        load_digit(data, "upload.png")


def test_truncated_image_is_refused(mnist_test):
    data = png_bytes(big_digit(mnist_test, 1))
    with pytest.raises(UserError, match="upload.png"):
        load_digit(data[: len(data) // 2], "upload.png")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width×height pixels but carries almost no data (a bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("side", [7_000, 20_000])  # over our limit; over Pillow's own as well
def test_decompression_bomb_is_refused_before_decoding(side):
    with pytest.raises(UserError, match="Refusing to decode it"):
        load_digit(png_header_only(side, side), "bomb.png")


def test_sixteen_bit_cmyk_and_animated_images(mnist_test):
    reference = load_digit(png_bytes(big_digit(mnist_test, 7)))
    sixteen = big_digit(mnist_test, 7).astype(np.uint16) * 257
    buffer = io.BytesIO()
    Image.fromarray(sixteen).save(buffer, format="PNG")
    assert Image.open(io.BytesIO(buffer.getvalue())).mode.startswith("I")
    assert (load_digit(buffer.getvalue()).int() - reference.int()).abs().max() <= 1

    buffer = io.BytesIO()
    Image.fromarray(big_digit(mnist_test, 7)).convert("CMYK").save(
        buffer, format="JPEG", quality=95
    )
    cmyk = load_digit(buffer.getvalue()).float()
    assert (
        torch.nn.functional.cosine_similarity(cmyk.flatten(), reference.float().flatten(), dim=0)
        > 0.95
    )

    frames = [Image.fromarray(big_digit(mnist_test, 7)), Image.fromarray(big_digit(mnist_test, 8))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    assert torch.equal(
        load_digit(buffer.getvalue()), load_digit(png_bytes(big_digit(mnist_test, 7)))
    )


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "CMYK", "YCbCr", "1"])
def test_opaque_photos_keep_every_value_of_the_float_path(mode):
    """as_photo's shortcut for opaque 8-bit modes gives the bytes pixel_values' float path
    gives, so decoding a photo for training or evaluation is unchanged by it."""
    from convnet.data.images import as_photo, pixel_values

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), "RGB")
    image = image.convert(mode) if mode != "P" else image.quantize(200)
    rgb, alpha = pixel_values(image)
    expected = np.round(rgb * 255).astype(np.uint8)
    photo = as_photo(image)
    assert alpha is None and photo.mode == "RGB" and photo is not image
    assert np.array_equal(np.asarray(photo), expected)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_opaque_photos_are_turned_upright_on_the_shortcut(orientation, tmp_path):
    from digit_drawings import with_orientation

    from convnet.data.folders import decode_image

    rng = np.random.default_rng(1)
    upright = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8), "RGB")
    stored = tmp_path / "photo.png"
    stored.write_bytes(with_orientation(upright, orientation))
    assert np.array_equal(np.asarray(decode_image(stored)), np.asarray(upright))
