"""Reading the samples of one shard: a run of consecutive samples, each with its image bytes
and class index, or with the reason it cannot be used.

The tar file is read with Python's `tarfile` in random-access mode: skipping to the first
sample wanted reads only the members' 512-byte headers (seeking over their data), and every
member is read with a bound on its size, so a damaged header cannot make us read gigabytes.
A sample is the members sharing a key (WebDataset's `base_plus_ext`: the key is the name up
to the first dot of its last part). Problems are the sample's, not the run's: a sample
without an image or a label, a label outside the classes, a member too large, and a shard
that ends early (truncated) each give that sample's reason; the caller decides whether to
skip it or stop (--strict).
"""

from __future__ import annotations

import functools
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from webdataset.tariterators import base_plus_ext

from convnet.data.decoding import image_extensions
from convnet.data.shard_manifest import Shard

# An image member larger than this is not read: the writer leaves out larger files
# (shard_writer.FILE_LIMIT), and it bounds what one sample can take in memory.
MEMBER_LIMIT = 64 * 2**20
LABEL_LIMIT = 32  # bytes of a .cls member: a decimal class index
TAR_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError)


@functools.cache
def image_suffixes() -> frozenset[str]:
    """The member suffixes taken for an image: every file ending of a format the decoder
    opens (.jpg, .png, .webp, .avif, .heic, .tif, …), as WebDataset names them."""
    return frozenset(ending.lstrip(".") for ending in image_extensions())


@dataclass
class RawSample:
    """One sample as read: `index` is its position in its split (the shard's offset plus its
    place in the shard); `image` its encoded bytes and `label` its class in the manifest's
    order, or `why` it cannot be used."""

    index: int
    image: bytes | None = None
    label: int = -1
    why: str | None = None
    key: str = ""


def _groups(archive: tarfile.TarFile) -> Iterator[tuple[str, dict[str, tarfile.TarInfo]]]:
    """(key, {suffix: member}) of consecutive members sharing a key, headers only."""
    key, members = None, {}
    while (info := archive.next()) is not None:
        if not info.isreg():
            continue
        prefix, suffix = base_plus_ext(info.name)
        if prefix is None:
            continue
        if prefix != key and members:
            yield key, members
            members = {}
        key = prefix
        members.setdefault(suffix.lower(), info)
    if members:
        yield key, members


def _read_member(archive: tarfile.TarFile, info: tarfile.TarInfo, limit: int) -> bytes:
    if info.size > limit:
        raise ValueError(f"its {info.name} holds {info.size:,} bytes, over {limit:,}")
    handle = archive.extractfile(info)
    data = handle.read(info.size) if handle is not None else b""
    if len(data) != info.size:
        raise EOFError("unexpected end of data")
    return data


def _sample(
    archive: tarfile.TarFile, key: str, members: dict[str, tarfile.TarInfo], classes: int
) -> tuple[bytes | None, int, str | None]:
    """(image bytes, label, None), or (None, -1, why it cannot be used)."""
    suffix = next((s for s in members if s in image_suffixes()), None)  # the first, in order
    if suffix is None:
        return None, -1, f"sample {key} has no image (a member such as {key}.jpg or {key}.png)"
    if "cls" not in members:
        return None, -1, f"sample {key} has no class label (.cls)"
    text = _read_member(archive, members["cls"], LABEL_LIMIT).decode("ascii", "replace").strip()
    if not text.isdigit():
        return None, -1, f"sample {key}'s class label {text[:20]!r} is not a class index"
    label = int(text)
    if label >= classes:
        why = f"sample {key}'s class label {label} is outside the manifest's {classes} classes"
        return None, -1, why
    return _read_member(archive, members[suffix], MEMBER_LIMIT), label, None


def read_samples(shard: Shard, first: int, count: int, classes: int) -> Iterator[RawSample]:
    """Samples `first` … `first + count - 1` of `shard`, always `count` of them, in order:
    those the file does not hold (it ends early) come with their reason."""
    position = first
    try:
        with (
            # unbuffered: a header is one 512-byte read, an image one read of its size; a
            # buffer would read the data of every sample skipped to reach `first`
            open(shard.path, "rb", buffering=0) as handle,
            tarfile.open(fileobj=handle, mode="r:") as archive,
        ):
            for place, (key, members) in enumerate(_groups(archive)):
                if place < first:
                    continue
                if position >= first + count:
                    return
                try:
                    image, label, why = _sample(archive, key, members, classes)
                except TAR_ERRORS as error:
                    image, label, why = None, -1, f"sample {key} {_unreadable(error)}"
                yield RawSample(shard.offset + position, image, label, why, key)
                position += 1
    except TAR_ERRORS as error:
        ended = f"the shard {_unreadable(error)} after image {position}"
    else:
        ended = f"the shard ends after image {position} (truncated)"
    for missing in range(position, first + count):
        why = f"image {missing + 1} of {shard.images}: {ended}"
        yield RawSample(shard.offset + missing, why=why)


def _unreadable(error: BaseException) -> str:
    """Why tar data cannot be read: a file that ends early says so."""
    if isinstance(error, EOFError) or "unexpected end of data" in str(error):
        return "ends early (truncated)"
    return f"cannot be read ({error})"
