"""Tar shards in the WebDataset format and the manifest that describes them.

`convnet data shard DIR --out OUT` writes OUT/train-000000.tar, … and OUT/val-000000.tar, …
(convnet/data/shard_writer.py) and OUT/manifest.json, which `--data OUT` reads. Each
sample of a shard is a group of tar members sharing a key, as WebDataset defines it:

    00001234.jpg    the image file's own bytes (its own format: .jpg, .png, …)
    00001234.cls    its class index, decimal text (WebDataset's convention for labels)
    00001234.json   {"file": the image's path under DIR}

The key is the image's position in its split. The manifest (JSON) holds the class names,
each split's shards in order with their images, bytes and SHA-256, and the files left out
while writing. `--data` takes the folder (its manifest names every shard, so nothing is
listed), or a brace pattern of shard paths whose folder holds the manifest: the pattern
names the shards read, of either split (`OUT/{train-{000000..000099},val-000000}.tar`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from convnet.data.ilsvrc import listing
from convnet.errors import UserError

MANIFEST_NAME = "manifest.json"
FORMAT = "webdataset"
VERSION = 1
SPLITS = ("train", "val")
SHARD_NAME = re.compile(r"^(train|val)-\d{6}\.tar$")
SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A manifest lists a few hundred bytes per shard and the files left out: 64 MiB is far above
# what ImageNet's 1.33 M images need, and bounds what a damaged file can make us read.
MANIFEST_LIMIT = 64 * 2**20
# A brace pattern names each shard; no shard set needs more names than this.
PATTERN_LIMIT = 1_000_000
DEFAULT_SHARD_SIZE = "256MB"  # ~2,300 ImageNet JPEGs: WebDataset's advice is 100 MB–1 GB
HASH_CHUNK = 2**20  # bytes read at a time while hashing: bounded memory for any shard size


@dataclass(frozen=True)
class Shard:
    """One tar file of a split: `offset` is the position of its first image in the split
    (in the manifest's order), so an image's index is the same whichever shards are read."""

    name: str
    split: str
    images: int
    size: int  # bytes
    sha256: str
    offset: int
    path: Path


@dataclass
class ShardSet:
    """The shards `--data` names, by split, with the manifest's classes."""

    root: Path  # the folder of the shards and the manifest
    classes: tuple[str, ...]
    shards: dict[str, list[Shard]]
    skipped: dict[str, list[tuple[Path, str]]] = field(default_factory=dict)


def is_pattern(data: str) -> bool:
    """Whether `--data` names shards by a brace pattern or as one .tar file."""
    return "{" in data or data.endswith(".tar")


def is_shard_data(data: str | Path | None) -> bool:
    """Whether `--data` names shards: a folder holding a manifest, or a pattern of shards."""
    if data is None:
        return False
    text = str(data)
    return is_pattern(text) or (Path(text).expanduser() / MANIFEST_NAME).is_file()


def sha256_of(path: Path) -> str:
    """The SHA-256 of a file, read a chunk at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_shard(shard: Shard) -> None:
    """Refuse a shard that is not the one the manifest describes: another size (a partial
    copy, a failed transfer) or other bytes (SHA-256)."""
    try:
        size = shard.path.stat().st_size
        digest = sha256_of(shard.path) if size == shard.size else None
    except OSError as error:
        raise UserError(f"Shard {shard.path} cannot be read ({error.strerror or error}).") from None
    if size != shard.size:
        why = f"holds {size:,} bytes, not the {shard.size:,} its manifest lists"
    elif digest != shard.sha256:
        why = f"has SHA-256 {digest}, not the manifest's {shard.sha256}"
    else:
        return
    raise UserError(
        f"Shard {shard.path} {why}: it is not the shard the manifest describes (changed, "
        "damaged or copied in part since it was written). Copy it again, or write the shards "
        "again with 'convnet data shard'."
    )


def _manifest_error(path: Path, why: str) -> UserError:
    return UserError(
        f"{path} is not a usable shard manifest ({why}); write the shards again with "
        "'convnet data shard DIR --out OUT'."
    )


def _whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_manifest(path: Path) -> ShardSet:
    """The manifest at `path`, checked: every shard of every split with its place."""
    try:
        if path.stat().st_size > MANIFEST_LIMIT:
            raise _manifest_error(path, f"larger than {MANIFEST_LIMIT // 2**20} MiB")
        document = json.loads(path.read_bytes())
    except OSError as error:
        raise UserError(f"{path} cannot be read ({error.strerror or error}).") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise _manifest_error(path, f"not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _manifest_error(path, f'no "format": "{FORMAT}"')
    if document.get("version") != VERSION:
        raise _manifest_error(path, f"version {document.get('version')!r}, not {VERSION}")
    classes = document.get("classes")
    if (
        not isinstance(classes, list)
        or len(classes) < 1
        or not all(isinstance(name, str) and name for name in classes)
        or len(set(classes)) != len(classes)
    ):
        raise _manifest_error(path, '"classes" must be a list of distinct names')
    splits = document.get("splits")
    if not isinstance(splits, dict) or not set(splits) <= set(SPLITS):
        raise _manifest_error(path, f'"splits" must map {" and ".join(SPLITS)} to their shards')
    shards: dict[str, list[Shard]] = {}
    for split, entry in splits.items():
        listed = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(listed, list):
            raise _manifest_error(path, f'the {split} split has no list of "shards"')
        offset, shards[split] = 0, []
        for item in listed:
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str) or not SHARD_NAME.match(name) or name[:-11] != split:
                raise _manifest_error(path, f"a {split} shard is named {name!r}")
            if not (
                _whole_number(item.get("images"))
                and _whole_number(item.get("bytes"))
                and isinstance(item.get("sha256"), str)
                and SHA256.match(item["sha256"])
            ):
                raise _manifest_error(path, f"{name} lacks its images, bytes or sha256")
            counts = (item["images"], item["bytes"], item["sha256"])
            shards[split].append(Shard(name, split, *counts, offset, path.parent / name))
            offset += item["images"]
    skipped = {
        split: [(Path(str(row.get("file"))), str(row.get("reason"))) for row in rows]
        for split, rows in (document.get("skipped") or {}).items()
        if isinstance(rows, list) and all(isinstance(row, dict) for row in rows)
    }
    return ShardSet(path.parent, tuple(classes), shards, skipped)


def _expand(pattern: str) -> list[Path]:
    import braceexpand

    paths = []
    for name in braceexpand.braceexpand(pattern):
        if len(paths) >= PATTERN_LIMIT:
            raise UserError(f"{pattern} names more than {PATTERN_LIMIT:,} shards.")
        paths.append(Path(name).expanduser())
    return paths


def open_shards(data: str | Path) -> ShardSet:
    """The shards `--data` names: a folder with its manifest, or a brace pattern of shards
    whose folder holds the manifest. UserError for missing shards or manifest."""
    text = str(data)
    if not is_pattern(text):
        folder = Path(text).expanduser()
        return read_manifest(folder / MANIFEST_NAME)
    paths = _expand(text)
    folders = sorted({str(path.parent) for path in paths})
    if len(folders) != 1:
        raise UserError(
            f"{text} names shards in {len(folders)} folders ({listing(folders)}); a pattern "
            f"names shards of one folder, the one holding their {MANIFEST_NAME}."
        )
    manifest = Path(folders[0]) / MANIFEST_NAME
    if not manifest.is_file():
        raise UserError(
            f"{folders[0]} holds no {MANIFEST_NAME}: --data reads shards with the manifest "
            "'convnet data shard' writes beside them (it names their classes and checksums)."
        )
    shard_set = read_manifest(manifest)
    known = {shard.name: shard for shards in shard_set.shards.values() for shard in shards}
    unknown = [path.name for path in paths if path.name not in known]
    if unknown:
        raise UserError(f"{manifest} lists no shard named {listing(unknown)}.")
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise UserError(f"{text} names shards that do not exist: {listing(missing)}.")
    chosen = {path.name for path in paths}
    for split, shards in shard_set.shards.items():
        shard_set.shards[split] = [shard for shard in shards if shard.name in chosen]
    return shard_set
