"""The input kinds tools/fuzz.py adds for files and runs, images and folders: each a maker of
valid inputs, one of hostile ones, and a `try_…` that feeds one to convnet and returns
"accepted" or "rejected" (a UserError), raising anything else, which tools/fuzz.py counts as
a crash. Accepted inputs are checked too: an AssertionError is a crash.

- archive: gzip, tar.gz, plain tar and zip files, among them bombs of zeros, read with the
  readers' limits (convnet/data/archives.py, CIFAR-10's archive reader);
- photo: images in every format Pillow and pillow-heif write (AVIF, HEIC, JFIF, WebP, …) and
  of extreme aspect ratios, through the photo preparation and the digit preparation;
- config: config.json documents, damaged or edited (wrong types, negative and huge values,
  deep nesting, unknown model options), through `parse_saved_config`;
- weights: lenet5 weights with NaN, infinity, integers, a shared key prefix, other shapes,
  or a damaged safetensors header, through `load_weights`;
- folder: class folders on disk with random links (loops, links up, to other classes, to
  files twice, broken), hidden and non-image files, read by `open_image_collection`, which
  must count each real file once.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from functools import cache
from pathlib import Path

import torch
from PIL import Image

from convnet.data.archives import gunzip
from convnet.data.cifar import read_archive
from convnet.data.folders import open_image_collection
from convnet.data.images import load_digit
from convnet.data.preparation import decode_image, photo_transform
from convnet.engine.saved_config import parse_saved_config
from convnet.engine.weight_files import safetensors_bytes
from convnet.engine.weight_fit import load_weights
from convnet.errors import UserError
from convnet.models import get_model

LIMIT = 4096  # bytes a fuzzed archive member may hold: bombs pass it at once
MEMBER = "data_batch_1.bin"


# --- archives ------------------------------------------------------------------------------


@cache
def _zeros_gzip(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return packer.compress(bytes(size)) + packer.flush()


def _tar(members: dict[str, bytes], mode: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def valid_archive(rng: random.Random) -> bytes:
    data = rng.randbytes(rng.choice([0, 1, 100, LIMIT]))
    members = {rng.choice([MEMBER, f"cifar-10-batches-bin/{MEMBER}"]): data}
    kind = rng.randrange(4)
    if kind == 0:
        return zlib.compress(data) if rng.random() < 0.1 else _zeros_gzip(len(data))
    return _tar(members, rng.choice(["w:gz", "w"])) if kind < 3 else _zip(members)


def hostile_archive(rng: random.Random) -> bytes:
    """Bombs (zeros far past the limit), members of other names, links, deep paths."""
    size = rng.choice([LIMIT + 1, 10**6, 20 * 10**6])
    kind = rng.randrange(5)
    if kind == 0:
        return _zeros_gzip(size)
    if kind == 1:
        return _zip({MEMBER: bytes(size)})
    if kind == 2:
        name = rng.choice(["../escape.bin", "/etc/passwd", "a/b/c/" + MEMBER, "readme.html"])
        return _tar({name: bytes(rng.choice([1, size]))}, "w:gz")
    if kind == 3:  # a symbolic link where a file should be
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            link = tarfile.TarInfo(MEMBER)
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            archive.addfile(link)
        return buffer.getvalue()
    return _tar({MEMBER: bytes(min(size, 10**6))}, "w:gz")


def try_archive(data: bytes) -> str:
    try:
        if data[:2] == b"\x1f\x8b" and data[2:3] == b"\x08" and not _is_tar_gz(data):
            out = gunzip(data, LIMIT, "fuzz.gz")
            assert len(out) <= LIMIT
        else:
            found = read_archive(data, {MEMBER: LIMIT}, "fuzz.tar.gz")
            assert all(len(value) <= LIMIT for value in found.values()), "past the limit"
    except UserError:
        return "rejected"
    return "accepted"


def _is_tar_gz(data: bytes) -> bool:
    try:
        head = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, 512)
    except zlib.error:
        return False
    return len(head) == 512 and head[257:262] == b"ustar"


# --- photos of any format and aspect -------------------------------------------------------

PHOTO_FORMATS = ["AVIF", "HEIF", "JPEG", "WEBP", "PNG", "GIF", "TIFF", "BMP"]
SIDES = [1, 2, 3, 7, 31, 64, 200]
LONG_SIDES = [500, 2000, 8000, 20000]


def valid_photo(rng: random.Random) -> bytes:
    width, height = rng.choice(SIDES), rng.choice(SIDES)
    if rng.random() < 0.3:  # an extreme aspect ratio
        width, height = (rng.choice(LONG_SIDES), rng.choice([1, 2, 3]))[:: rng.choice([1, -1])]
    colour = tuple(rng.randrange(256) for _ in range(3))
    image = Image.new("RGB", (width, height), colour)
    if width > 2 and height > 2:
        image.paste((255 - colour[0], 0, 0), (0, 0, width // 2, height // 2))
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=rng.choice(PHOTO_FORMATS))
    except (ValueError, RuntimeError, OSError):  # past an encoder's own limits (sides, aspect)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def hostile_photo(rng: random.Random) -> bytes:
    """Extreme aspect ratios up to 1×60,000, JPEG headers declaring up to 65,500² pixels,
    photos of odd formats cut short."""
    kind = rng.randrange(3)
    if kind == 0:
        long = rng.choice([8000, 20000, 60000])
        size = (1, long) if rng.random() < 0.5 else (long, rng.choice([1, 2]))
        buffer = io.BytesIO()
        Image.new("L", size, rng.randrange(256)).save(buffer, format="PNG")
        return buffer.getvalue()
    if kind == 1:
        side = rng.choice([9000, 20000, 65500])
        frame = side.to_bytes(2, "big") * 2
        header = b"\xff\xc0\x00\x0b\x08" + frame + b"\x01\x01\x11\x00"
        return b"\xff\xd8" + header + rng.randbytes(rng.randint(0, 64)) + b"\xff\xd9"
    data = valid_photo(rng)
    return data[: rng.randint(1, max(1, len(data) - 1))]


def try_photo(data: bytes) -> str:
    try:
        image = decode_image(data, keep=256)
        prepared = photo_transform((3, 64, 64))(image)
        assert prepared.shape == (3, 64, 64) and torch.isfinite(prepared).all()
    except UserError:
        return "rejected"
    try:
        digit = load_digit(data, "fuzz")
        assert digit.shape == (28, 28)
    except UserError:
        pass  # a photo need not hold a digit
    return "accepted"


# --- config.json ---------------------------------------------------------------------------

CONFIG = {
    "model": "lenet5",
    "dataset": "mnist",
    "epochs": 2,
    "batch_size": 128,
    "lr": 0.05,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "warmup_fraction": 0.15,
    "augment": False,
    "label_smoothing": 0.0,
    "seed": 0,
    "test_subset": None,
    "world_size": 1,
    "classes": [str(n) for n in range(10)],
    "model_config": {},
}
HOSTILE_VALUES = [-3, 0, 2**31, 2**63, 10**30, -1e308, 1e308, 0.5, "ten", "", True, None]
HOSTILE_VALUES += [[], {}, [[[[[[1]]]]]], {"a": {"b": {"c": {"d": {"e": 1}}}}}, ["0", "0"]]


def valid_config(rng: random.Random) -> bytes:
    document = dict(CONFIG)
    if rng.random() < 0.3:
        document["model_config"] = {"pooling": rng.choice(["max", "average"])}
    return json.dumps(document).encode()


def hostile_config(rng: random.Random) -> bytes:
    document = dict(CONFIG)
    for _ in range(rng.randint(1, 3)):
        field = rng.choice([*CONFIG, "model_config", "custom_module", "data", "image_size"])
        if field == "model_config" and rng.random() < 0.5:
            document[field] = {
                rng.choice(["depth", "num_classes", "pooling", "x"]): rng.choice(HOSTILE_VALUES)
            }
        else:
            document[field] = rng.choice(HOSTILE_VALUES)
    text = json.dumps(document)
    if rng.random() < 0.1:  # nesting no parser takes
        text = '{"model": "lenet5", "model_config": ' + "[" * rng.choice([100, 10_000, 100_000])
    return text.encode()


def try_config(data: bytes) -> str:
    try:
        config = parse_saved_config(data.decode("utf-8", errors="replace"), Path("config.json"))
    except UserError:
        return "rejected"
    assert config.epochs is None or config.epochs >= 1
    return "accepted"


# --- weights -------------------------------------------------------------------------------


@cache
def _lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model("lenet5", num_classes=10)


def valid_weights(rng: random.Random) -> bytes:
    state = {key: value.clone() for key, value in _lenet().state_dict().items()}
    if rng.random() < 0.3:
        prefix = rng.choice(["model.", "net.", "backbone.", "module.", "model.net."])
        state = {prefix + key: value for key, value in state.items()}
    return safetensors_bytes(state)


def hostile_weights(rng: random.Random) -> bytes:
    state = {key: value.clone() for key, value in _lenet().state_dict().items()}
    key = rng.choice(list(state))
    kind = rng.randrange(5)
    if kind == 0:
        state[key].view(-1)[rng.randrange(state[key].numel())] = rng.choice(
            [float("nan"), float("inf"), float("-inf")]
        )
    elif kind == 1:
        state[key] = state[key].round().to(rng.choice([torch.int64, torch.int8, torch.bool]))
    elif kind == 2:
        state[key] = torch.zeros([rng.choice([0, 1, 3, 85]) for _ in range(rng.randint(0, 4))])
    elif kind == 3:
        del state[key]
    else:
        state[rng.choice(["x", key + ".extra", "model." + key])] = torch.zeros(2)
    return safetensors_bytes(state)


def try_weights(data: bytes, folder: Path) -> str:
    path = folder / "fuzz.safetensors"
    path.write_bytes(data)
    model = _lenet()
    try:
        load_weights(model, path, log=lambda message: None)
    except UserError:
        return "rejected"
    finally:
        model.load_state_dict(_lenet_state())
    return "accepted"


@cache
def _lenet_state() -> dict:
    return {key: value.clone() for key, value in _lenet().state_dict().items()}


# --- folders with links --------------------------------------------------------------------


@cache
def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def folder_tree(rng: random.Random, root: Path) -> dict:
    """Two or three class folders of a few entries each, as a plan written by `try_folder`:
    (path, kind, target) with kind file, empty, text, hidden or link."""
    entries = []
    classes = [f"class{index}" for index in range(rng.randint(2, 3))]
    places = ["", *classes, *(f"{name}/sub" for name in classes)]
    for _ in range(rng.randint(3, 14)):
        where = rng.choice(places[1:])
        kind = rng.choices(["file", "empty", "text", "hidden", "link"], [6, 1, 1, 1, 4])[0]
        target = None
        if kind == "link":
            target = rng.choice(
                [
                    ".",
                    "..",
                    "../..",
                    "../../..",
                    "/",
                    "nowhere",
                    *places,
                    *(f"{p}/f0.png" for p in places),
                ]
            )
        entries.append((f"{where}/e{len(entries)}", kind, target))
    return {"classes": classes, "entries": entries, "split": rng.choice(["train", "val", "all"])}


def try_folder(plan: dict, scratch: Path) -> str:
    root = scratch / "data"
    shutil.rmtree(root, ignore_errors=True)
    for name in plan["classes"]:
        (root / name / "sub").mkdir(parents=True)
        (root / name / "f0.png").write_bytes(_png())
    for path, kind, target in plan["entries"]:
        full = root / path
        if kind == "file":
            full.with_suffix(".png").write_bytes(_png())
        elif kind == "empty":
            full.with_suffix(".jpg").write_bytes(b"")
        elif kind == "text":
            full.with_suffix(".txt").write_text("notes")
        elif kind == "hidden":
            full.with_name("." + full.name).write_bytes(_png())
        else:
            destination = target if target.startswith(("/", ".")) else str(root / target)
            if not full.exists():
                os.symlink(destination, full)
    try:
        collection = open_image_collection(root, plan["split"], val_fraction=0.5)
    except UserError:
        return "rejected"
    identities = [(os.stat(path).st_dev, os.stat(path).st_ino) for path, _ in collection.samples]
    assert len(identities) == len(set(identities)), "a real file counted twice"
    for path, _ in collection.samples:
        assert os.path.realpath(path).startswith(str(scratch.resolve())), f"read {path}"
    return "accepted"


def scratch_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="convnet-fuzz-"))
