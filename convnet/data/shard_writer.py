"""`convnet data shard DIR --out OUT`: an image folder written as WebDataset tar shards.

The folder is read as `--data DIR` reads it (convnet/data/folders.py: train/ and val/, class
folders split by --val-fraction, or ILSVRC2012), and each split is written as
OUT/SPLIT-000000.tar, … with the image files' own bytes (no re-encoding) and OUT/manifest.json
(convnet/data/shard_manifest.py). The training images are written in a seeded random order,
so that each shard holds a mix of classes and reading whole shards in turn, through a
shuffle buffer, still gives mixed batches; the validation images keep the folder's order, so
image i of the shards is image i of the folder.

The tar members are written by the `webdataset` package's TarWriter, so WebDataset, timm and
other readers of the format read the shards too. Each shard is written under a temporary
name, hashed as it is written, then renamed; the manifest comes last, so an interrupted run
leaves no manifest and no shard that looks whole.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from convnet.data.folders import ImageCollection, open_image_collection
from convnet.data.shard_manifest import DEFAULT_SHARD_SIZE, FORMAT, MANIFEST_NAME, VERSION
from convnet.data.shard_reader import image_suffixes
from convnet.errors import UserError
from convnet.files import atomic_write_json, ensure_writable
from convnet.wording import counted

# Images read ahead of the writer by threads: reading one file at a time from a network file
# system waits on each round trip, which is what stalls training from folders; 8 requests in
# flight hide most of it, and 64 images (about 7 MB of ImageNet JPEGs) bound the memory.
READERS = 8
READ_AHEAD = 64
# An image file larger than this is left out (listed): ILSVRC2012's largest is a few MB, and
# a reader holds one image in memory at a time (convnet/data/shard_reader.py: MEMBER_LIMIT).
FILE_LIMIT = 64 * 2**20
UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}
# A tar member is a 512-byte header and its data padded to 512 bytes; the archive ends with
# two empty blocks and is padded to a whole record (tarfile.RECORDSIZE, 10,240 bytes).
BLOCK = 512
TAR_OVERHEAD = 3 * 2 * BLOCK  # per sample, at most: three headers and their padding


def _member_bytes(size: int) -> int:
    return BLOCK + -(-size // BLOCK) * BLOCK


def _archive_bytes(members: int) -> int:
    """The size of a tar file whose members take `members` bytes."""
    return -(-(members + 2 * BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE


def parse_shard_size(text: str) -> tuple[int | None, int | None]:
    """--shard-size: "1000" (images per shard) or "256MB" (bytes per shard, also KB, GB,
    MiB…). Returns (images, bytes), one of them None."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text or "")
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in UNITS) or float(match.group(1)) <= 0:
        raise UserError(
            f"--shard-size {text!r} is neither a number of images (e.g. 1000) nor a size "
            "(e.g. 256MB, 1GB)."
        )
    if not match.group(2):
        if "." in match.group(1):
            raise UserError(f"--shard-size {text} images: give a whole number.")
        return int(match.group(1)), None
    return None, max(1, int(float(match.group(1)) * UNITS[unit]))


def _extension(path: Path, data: bytes) -> str:
    """The tar member suffix of an image file: its own ending, lower case (.jpeg as .jpg,
    which WebDataset's decoders expect), or for a file whose name says no image format (a
    folder's images are judged by content) its format's: jpg, png, …"""
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in image_suffixes():
        with contextlib.suppress(Exception), Image.open(io.BytesIO(data)) as image:
            suffix = (image.format or "").lower()  # the header only: nothing is decoded
    return "jpg" if suffix in ("jpeg", "jfif", "jpe") else suffix or "img"


class _HashingFile(io.RawIOBase):
    """A file being written, with the SHA-256 and the size of what went into it."""

    def __init__(self, handle) -> None:
        import hashlib

        self.handle, self.digest, self.size = handle, hashlib.sha256(), 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)


class _SplitWriter:
    """Writes one split's shards, a new one when the next image would pass the limit."""

    def __init__(self, out: Path, split: str, images: int | None, size: int | None) -> None:
        self.out, self.split, self.max_images, self.max_bytes = out, split, images, size
        self.shards: list[dict] = []
        self.writer = self.file = self.hashing = None
        self.count = self.members = self.written = 0

    def _open(self) -> None:
        from webdataset import TarWriter

        name = f"{self.split}-{len(self.shards):06d}.tar"
        self.name, self.temporary = name, self.out / f".{name}.partial"
        self.file = self.temporary.open("wb")
        self.hashing = _HashingFile(self.file)
        # mtime 0 and fixed owners: the same images give the same bytes and SHA-256
        self.writer = TarWriter(self.hashing, encoder=False, mtime=0, user="", group="")
        self.count = self.members = 0

    def _close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()  # the end-of-archive blocks
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.temporary, self.out / self.name)
        self.shards.append(
            {
                "name": self.name,
                "images": self.count,
                "bytes": self.hashing.size,
                "sha256": self.hashing.digest.hexdigest(),
            }
        )
        self.writer = None

    def add(self, key: str, extension: str, image: bytes, label: int, file: str) -> None:
        """One sample; a new shard first where it would pass --shard-size (a shard holds at
        least one sample, whatever its size)."""
        sample = {"__key__": key, extension: image, "cls": str(label).encode()}
        sample["json"] = json.dumps({"file": file}).encode()
        size = sum(_member_bytes(len(sample[name])) for name in (extension, "cls", "json"))
        full = self.writer is not None and (
            (self.max_images is not None and self.count >= self.max_images)
            or (self.max_bytes is not None and _archive_bytes(self.members + size) > self.max_bytes)
        )
        if full:
            self._close()
        if self.writer is None:
            self._open()
        self.writer.write(sample)
        self.count += 1
        self.written += 1
        self.members += size

    def finish(self) -> list[dict]:
        self._close()
        return self.shards


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read(path: Path) -> bytes | str:
    """A file's bytes, or why it cannot be used."""
    try:
        size = path.stat().st_size
        if size > FILE_LIMIT:
            return f"larger than {FILE_LIMIT // 2**20} MiB ({size:,} bytes)"
        with path.open("rb") as handle:
            data = handle.read(FILE_LIMIT + 1)
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    return data if data else "empty file (0 bytes)"


def _write_split(
    collection: ImageCollection,
    out: Path,
    images: int | None,
    size: int | None,
    order: list[int],
    skipped: list[tuple[Path, str]],
) -> list[dict]:
    writer = _SplitWriter(out, collection.split, images, size)
    samples = [collection.samples[i] for i in order]
    bar = tqdm(total=len(samples), unit="img", desc=f"sharding {collection.split}", leave=False)
    with ThreadPoolExecutor(READERS) as pool, bar:
        for start in range(0, len(samples), READ_AHEAD):
            chunk = samples[start : start + READ_AHEAD]
            for (path, label), data in zip(
                chunk, pool.map(_read, [path for path, _ in chunk]), strict=True
            ):
                bar.update()
                if isinstance(data, str):
                    skipped.append((path, data))
                    continue
                key = f"{writer.written:08d}"  # the image's position in its split
                relative = path.relative_to(collection.root).as_posix()
                writer.add(key, _extension(path, data), data, label, relative)
    return writer.finish()


def write_shards(
    root: str | Path,
    out: str | Path,
    shard_size: str = DEFAULT_SHARD_SIZE,
    *,
    val_fraction: float | None = None,
    seed: int = 0,
    strict: bool = False,
    ground_truth: str | None = None,
) -> dict:
    """Write the image folder `root` as shards in `out`; returns the manifest. `val_fraction`
    and `seed` split a folder of class folders as `--data` does (default 0.2); `seed` also
    orders the training images. UserError for a folder `--data` would refuse, an option its
    layout has no use for, or an `out` that already holds shards."""
    images, size = parse_shard_size(shard_size)
    out = Path(out).expanduser()
    if (out / MANIFEST_NAME).exists():
        raise UserError(
            f"{out} already holds shards ({MANIFEST_NAME}); give another --out, or remove "
            "the folder first."
        )
    options = dict(val_fraction=val_fraction or 0.2, seed=seed, strict=strict)
    train = open_image_collection(root, "train", **options)
    val = open_image_collection(root, "val", ground_truth=ground_truth, **options)
    if val_fraction is not None and train.layout != "class-folders":
        raise UserError(
            f"--val-fraction divides a folder of class folders; {train.root} has its own val "
            f"split ({train.layout}). Drop --val-fraction."
        )
    if ground_truth is not None and train.layout != "ilsvrc":
        raise UserError(
            f"--ground-truth labels ILSVRC2012's validation images; {train.root} "
            f"is not in that layout ({train.layout}). Drop --ground-truth."
        )
    total = sum(_size(path) for collection in (train, val) for path, _ in collection.samples)
    ensure_writable(out, total + TAR_OVERHEAD * (len(train) + len(val)), "the shards")
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)  # classes mixed within each shard
    splits, skipped = {}, {}
    for collection, positions in ((train, order), (val, list(range(len(val))))):
        left_out = list(collection.skipped)
        shards = _write_split(collection, out, images, size, positions, left_out)
        if strict and len(left_out) > len(collection.skipped):
            raise UserError(
                f"--strict: {counted(len(left_out) - len(collection.skipped), 'file')} cannot be "
                f"written: {left_out[len(collection.skipped)][0]} "
                f"({left_out[len(collection.skipped)][1]}) …; no manifest was written."
            )
        splits[collection.split] = {"images": sum(s["images"] for s in shards), "shards": shards}
        skipped[collection.split] = [{"file": str(p), "reason": why} for p, why in left_out]
    written_from = {
        "folder": str(train.root),
        "layout": train.layout,
        "val_fraction": options["val_fraction"] if train.layout == "class-folders" else None,
        "seed": seed,  # of the training images' order (and of a class-folder split)
        "ground_truth": str(val.ground_truth) if val.ground_truth else None,
    }
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "classes": list(train.classes),
        "splits": splits,
        "skipped": skipped,
        "written_from": written_from,
    }
    atomic_write_json(out / MANIFEST_NAME, manifest)
    return manifest
