"""From an image file to the tensor a model sees: the two preparations, one for each kind of
model, shared by `predict`, `explain`, `evaluate` and training on image files.

- photo: torchvision's ImageNet preprocessing: the shorter side resized to `resize`, a centre
  crop of `crop`, [0, 1], normalised (`evaluation_transform`); training takes random resized
  crops and flips instead (`training_transform`);
- digit: the file prepared as MNIST was (convnet/data/images.py: grey, the ink's box scaled
  to 20×20 and centred by mass in 28×28), then padded or resized to the model's input.

Files are decoded by the one decoder (convnet/data/decoding.py), told how many pixels the
preparation needs so that a large JPEG is decoded reduced. An image whose sides differ by more
than MAX_ASPECT times is cut to that aspect about its centre before it is resized: the centre
crop never reaches further (resized on its short side, a 1×8000 PNG asked for 6.3 GB and ended in a traceback).

The evaluation steps call Pillow as torchvision's Resize and CenterCrop do on a PIL image,
pixel for pixel (tests/data/test_preparation.py), without importing torchvision: its import
takes 1.2 s of every `evaluate`, `predict` and `serve` start (it imports torch._dynamo).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from convnet.data.decoding import DECODE_ERRORS, open_image
from convnet.data.images import SHEET_SIDE, as_photo, mnist_style, oriented, to_grey
from convnet.data.transforms import normalize
from convnet.errors import UserError

if TYPE_CHECKING:  # torchvision is imported where it is used (convnet/models/imagenet.py)
    from torchvision.transforms import InterpolationMode

# The longest side a photo keeps, as a multiple of its shorter side, before it is resized:
# the centre crop takes at most the shorter side's length of it (crop ≤ resize), so 32 leaves
# 15 shorter sides of margin either way, and resizing stays within 32 × resize² pixels.
MAX_ASPECT = 32
# RandomResizedCrop's smallest crop is 8% of the area (Szegedy et al. 2015): a side of
# sqrt(0.08) ≈ 0.28 of the image, so training decodes a JPEG with crop / 0.28 pixels kept.
SMALLEST_CROP_AREA = 0.08


def decode_image(path: Path | str | bytes, keep: int | None = None) -> Image.Image:
    """An 8-bit RGB image, the right way up (EXIF orientation), from any file and pixel mode
    Pillow reads: greyscale, CMYK, palette, 16-bit and float, with transparency over white.
    `keep`: the shorter side the preparation needs (a large JPEG is decoded reduced to it)."""
    return as_photo(open_image(path, keep=keep))


def read_image(path: Path | str | bytes, keep: int | None = SHEET_SIDE) -> Image.Image:
    """The file's own pixels and mode, the right way up (for the digit preparation, which
    measures them before any conversion), named after its file for the messages."""
    image = oriented(open_image(path, keep=keep))
    # turned upright, it is a copy that no longer knows its file
    image.filename = "image" if isinstance(path, bytes) else str(path)
    return image


def decode_failure(path: Path, transform: Callable | None = None) -> str | None:
    """Why `path` cannot be decoded, or prepared by `transform` (None if it can): for
    listing skipped files."""
    try:
        image = getattr(transform, "decode", decode_image)(path)
        if transform is not None:
            transform(image)
    except (*DECODE_ERRORS, UserError) as error:
        text = str(error).strip().splitlines()[0] if str(error).strip() else ""
        if isinstance(error, UserError):  # our own sentence: no class name before it
            return f"cannot be decoded: {text.removeprefix(f'{path}: ').rstrip('.')}"
        return f"cannot be decoded ({type(error).__name__}{': ' + text if text else ''})"
    return None


class BoundedAspect:
    """Cut an image whose longer side passes MAX_ASPECT times its shorter one to that aspect,
    about its centre (a class: workers pickle it)."""

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short = max(1, min(width, height))
        if max(width, height) <= MAX_ASPECT * short:
            return image
        keep_width, keep_height = min(width, MAX_ASPECT * short), min(height, MAX_ASPECT * short)
        left, top = (width - keep_width) // 2, (height - keep_height) // 2
        return image.crop((left, top, left + keep_width, top + keep_height))

    def __repr__(self) -> str:
        return f"BoundedAspect({MAX_ASPECT})"


class ResizeShorterSide:
    """The shorter side resized to `size`, the longer in proportion (rounded down), with
    Pillow's antialiased filter `interpolation` ("bilinear", "bicubic", ...): torchvision's
    Resize(size, antialias=True) on a PIL image."""

    def __init__(self, size: int, interpolation: str = "bilinear") -> None:
        self.size, self.interpolation = size, interpolation
        self.resample = Image.Resampling[interpolation.upper().replace("-EXACT", "")]

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        short, long = sorted((width, height))
        new_short, new_long = self.size, int(self.size * long / short)
        size = (new_short, new_long) if width <= height else (new_long, new_short)
        return image if size == image.size else image.resize(size, self.resample)

    def __repr__(self) -> str:
        return f"ResizeShorterSide({self.size}, {self.interpolation})"


class CentreCrop:
    """The centre `size`×`size` of an image (offsets rounded half to even), padded with 0
    first where a side is shorter: torchvision's CenterCrop on a PIL image."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        if width < self.size or height < self.size:
            padded = Image.new(image.mode, (max(width, self.size), max(height, self.size)))
            padded.paste(image, ((padded.width - width) // 2, (padded.height - height) // 2))
            image, (width, height) = padded, padded.size
        top = int(round((height - self.size) / 2.0))
        left = int(round((width - self.size) / 2.0))
        return image.crop((left, top, left + self.size, top + self.size))

    def __repr__(self) -> str:
        return f"CentreCrop({self.size})"


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An 8-bit PIL image as uint8 (C, H, W) (torchvision's pil_to_tensor)."""
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    return pixels.view(image.height, image.width, -1).permute(2, 0, 1)


class _Preprocess:
    """PIL image -> tensor (a class, not a lambda: workers may pickle it): `steps` on the
    image, then either [0, 1] and normalised by (`mean`, `std`) (float), or with `pixels` the
    uint8 pixels as they are (C, H, W), which the engine normalises on the model's device
    (`convnet.data.transforms.DeviceNormalize`): a quarter of the bytes from the workers.
    `keep` is the shorter side its steps need, which `decode` passes to the decoder;
    `erasing` (training) draws where random erasing falls after the steps, from the same
    generator (`ErasingDraw`)."""

    def __init__(
        self,
        steps: list[Callable],
        mean,
        std,
        channels: int,
        keep: int | None = None,
        *,
        pixels: bool = False,
        erasing: ErasingDraw | None = None,
    ) -> None:
        self.steps, self.mean, self.std, self.channels = steps, list(mean), list(std), channels
        self.keep, self.pixels, self.erasing = keep, pixels, erasing
        self.dtype = torch.uint8 if pixels else torch.float32

    def decode(self, path: Path | str) -> Image.Image:
        return decode_image(path, self.keep)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if self.channels == 1:
            image = image.convert("L")
        for step in self.steps:
            image = step(image)
        tensor = to_tensor(image)
        if self.pixels:
            return tensor
        return normalize(tensor.float() / 255, tuple(self.mean), tuple(self.std))

    def __repr__(self) -> str:
        steps = ", ".join(repr(step) for step in self.steps)
        return f"Preprocess([{steps}], mean={self.mean}, std={self.std})"


class ErasingDraw:
    """Where torchvision's RandomErasing(p) (v2, value 0) erases an image of a given shape,
    drawn from torch's generator exactly as it draws (whether, then the rectangle): (top,
    left, height, width), height 0 where it erases nothing. Drawn in the worker, right after
    the image's other draws; `convnet.data.transforms.erase_rectangles` applies it on the
    device after normalising, where 0 is the mean, as torchvision erases the normalised
    tensor."""

    def __init__(self, probability: float) -> None:
        from torchvision.transforms import v2

        self.transform = v2.RandomErasing(p=probability)

    def __call__(self, shape: torch.Size) -> torch.Tensor:
        none = torch.zeros(4, dtype=torch.long)
        if torch.rand(1) >= self.transform.p:  # as torchvision's _RandomApplyTransform
            return none
        # torchvision ≥ 0.21 names it make_params, earlier _get_params
        draw = getattr(self.transform, "make_params", None) or self.transform._get_params
        found = draw([torch.empty(shape, dtype=torch.uint8)])
        if found["v"] is None:  # no rectangle of the drawn sizes fitted: nothing erased
            return none
        return torch.tensor([found["i"], found["j"], found["h"], found["w"]])


class DigitPreprocess:
    """A file -> a normalised digit as the model's MNIST training data looked: the
    preparation `convnet predict` gives a digit model (grey, 20×20 box centred by mass in
    28×28, padded or resized to the model's input)."""

    decode = staticmethod(read_image)
    dtype = torch.float32
    erasing = None

    def __init__(self, size: tuple[int, int, int], mean, std) -> None:
        self.shape, self.mean, self.std = torch.Size(size), mean, std

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from convnet.data.transforms import normalize, to_model_input

        digit = mnist_style(to_grey(image), getattr(image, "filename", "") or "image")
        return normalize(to_model_input(digit[None], tuple(self.shape))[0], self.mean, self.std)


def _per_channel(value, channels: int) -> list[float]:
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        return values * channels
    if channels == 1:
        return [sum(values) / len(values)]
    return values


def evaluation_transform(
    resize: int,
    crop: int,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    interpolation: InterpolationMode | str | None = None,
    channels: int = 3,
    *,
    pixels: bool = False,
) -> _Preprocess:
    """torchvision's ImageNet evaluation preprocessing (its ImageClassification preset): the
    shorter side resized to `resize`, a centre crop of `crop`, [0, 1], then normalised (with
    `pixels`, uint8 left to the device to normalise). An image of extreme aspect is first cut
    to MAX_ASPECT about its centre (`BoundedAspect`). `interpolation`: a name or
    torchvision's InterpolationMode; None: bilinear."""
    interpolation = getattr(interpolation, "value", interpolation) or "bilinear"
    steps = [BoundedAspect(), ResizeShorterSide(resize, interpolation), CentreCrop(crop)]
    mean, std = _per_channel(mean, channels), _per_channel(std, channels)
    return _Preprocess(steps, mean, std, channels, keep=resize, pixels=pixels)


def training_transform(
    crop: int,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    channels: int = 3,
    *,
    pixels: bool = False,
) -> _Preprocess:
    """The standard ImageNet augmentation (Szegedy et al. 2015's crops, as torchvision's
    references train): a random crop of 8–100% of the area and 3/4–4/3 aspect, resized to
    `crop`, and a horizontal flip half the time (`pixels`: as `evaluation_transform`)."""
    from torchvision import transforms

    steps = [transforms.RandomResizedCrop(crop, antialias=True), transforms.RandomHorizontalFlip()]
    keep = math.ceil(crop / math.sqrt(SMALLEST_CROP_AREA))
    mean, std = _per_channel(mean, channels), _per_channel(std, channels)
    return _Preprocess(steps, mean, std, channels, keep=keep, pixels=pixels)


def policy_transform(
    base: _Preprocess, auto_augment: str | None, random_erase: float
) -> _Preprocess:
    """`base` (the crop-and-flip augmentation, or evaluation's resize and centre crop with
    --no-augment) followed by torchvision's automatic augmentation policy on the image, and
    random erasing as its reference script trains (--auto-augment ra | ta_wide | augmix |
    imagenet; --random-erase P erases with 0, the mean, once normalised): its rectangle is
    drawn here (`ErasingDraw`) and set to 0 where the pixels are normalised."""
    from torchvision.transforms import v2

    policies = {
        "ra": v2.RandAugment,
        "ta_wide": v2.TrivialAugmentWide,
        "augmix": v2.AugMix,
        "imagenet": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
    }
    steps = [*base.steps, *([policies[auto_augment]()] if auto_augment else [])]
    erasing = ErasingDraw(random_erase) if random_erase > 0 else None
    return _Preprocess(
        steps, base.mean, base.std, base.channels, base.keep, pixels=base.pixels, erasing=erasing
    )


def photo_transform(
    size: tuple[int, int, int], resize: int | None = None, interpolation=None
) -> Callable[[Image.Image], torch.Tensor]:
    """The photo preparation of `predict` and `explain`: `evaluate`'s, in [0, 1] (the model's
    normalization is applied with the batch), the shorter side resized to `resize` (default
    size / 0.875: 256 for 224, torchvision's ratio) and centre-cropped to the model's input."""
    resize = resize or round(size[1] / 0.875)
    return evaluation_transform(resize, size[1], 0.0, 1.0, interpolation, channels=size[0])


def file_transform(
    input_size: tuple[int, int, int],
    photos: bool,
    resize: int | None = None,
    interpolation=None,
) -> Callable:
    """How one image file becomes a model's input in [0, 1] (its normalization is applied
    with the batch): a digit model's preparation (`DigitPreprocess`), else the photo
    preparation (`photo_transform`). `.decode(path)` reads the file; `.shape` is one
    prepared image's. What `predict`, `explain` and int8 calibration on files use."""
    if not photos:
        return DigitPreprocess(input_size, 0.0, 1.0)
    transform = photo_transform(input_size, resize, interpolation)
    transform.shape = torch.Size(input_size)
    return transform


def load_photo(source: str | Path | bytes, size: tuple[int, int, int]) -> torch.Tensor:
    """A photo file as `photo_transform` prepares it: float (C, H, W) in [0, 1]."""
    transform = photo_transform(size)
    return transform(transform.decode(source))
