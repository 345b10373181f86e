"""Reading compressed files and archives with a bound: gzip, tar (plain or compressed) and zip.

A data set's files have published sizes (`DatasetSpec.sizes`, pinned by their SHA-256), so no
decompression needs to produce more than that size plus a small margin: each reader here
stops at its `limit` and refuses the file in one paragraph (a UserError, exit status 2)
instead of expanding it. A 1.5 MB gzip of zeros expands to 1.5 GB; read unbounded, it took
3.6 GB of memory before its SHA-256 refused it.

Nothing is extracted to disk: members are read into memory by name, so a member named
../x or /etc/x can do no harm.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

from convnet.errors import UserError

# What a file may exceed its published size by before a reader stops: none of the files
# can be longer and still have its SHA-256, so the margin only lets the message say "too
# large" rather than cut a file short that would then fail for another reason.
MARGIN_BYTES = 2**20


class TooLarge(UserError):
    """A compressed file or archive member that expands past what it may hold."""


def too_large(name: str, limit: int, what: str = "expands past") -> TooLarge:
    return TooLarge(
        f"{name} {what} {limit:,} bytes, more than the file it should hold (its published "
        "size plus a 1 MiB margin); refusing it: a damaged file, another file, or a "
        "decompression bomb."
    )


def gunzip(data: bytes, limit: int, name: str) -> bytes:
    """The gzip stream `data` decompressed, at most `limit` bytes: `TooLarge` beyond that,
    and a UserError for a corrupt or truncated stream or bytes after its end (a file its
    header does not describe)."""
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = stream.decompress(data, limit + 1)
    except zlib.error as error:
        raise UserError(f"{name}: the gzip stream is corrupt ({error}).") from None
    if len(out) > limit:
        raise too_large(name, limit)
    if not stream.eof:
        raise UserError(f"{name}: the gzip stream is corrupt or truncated (it ends early).")
    if stream.unused_data:
        raise UserError(
            f"{name}: has trailing bytes: {len(stream.unused_data):,} bytes follow the end of "
            "the gzip stream."
        )
    return out


def read_file(path: Path, limit: int, name: str | None = None) -> bytes:
    """`path`'s bytes, refused (`TooLarge`) without reading when the file is over `limit`."""
    if path.stat().st_size > limit:
        raise too_large(name or str(path), limit, f"is {path.stat().st_size:,} bytes, over")
    return path.read_bytes()


def read_maybe_gzip(path: Path, limit: int) -> bytes:
    """A file's bytes, decompressed when it is gzip, at most `limit` bytes either way."""
    with path.open("rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    if not gzipped:
        return read_file(path, limit)
    # a gzip stream of incompressible data is a little larger than the data itself
    return gunzip(read_file(path, limit + MARGIN_BYTES), limit, str(path))


# A member name -> the name it is kept under, or None to pass it over. It raises a
# UserError for a member the archive must not hold.
Pick = Callable[[str, bool], "str | None"]


def read_members(raw: bytes, name: str, pick: Pick, limits: Mapping[str, int]) -> dict[str, bytes]:
    """The members of a tar (plain, gzip, bzip2 or xz) or zip archive that `pick` keeps,
    read into memory under the names it gives, each at most `limits[kept name]` bytes
    (`TooLarge` beyond). `pick(member name, is a plain file)` sees every member. UserError
    for an archive that cannot be read."""
    if zipfile.is_zipfile(io.BytesIO(raw)):
        return _zip_members(raw, name, pick, limits)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:*") as archive:
            for member in archive:
                kept = pick(member.name, member.isfile())
                if kept is None:
                    continue
                limit = limits[kept]
                if member.size > limit:  # tar stores a member's bytes as they are: its size
                    raise too_large(f"{name}: member '{member.name}'", limit, "declares over")
                found[kept] = archive.extractfile(member).read(limit + 1)
    except UserError:
        raise
    except Exception as error:  # a damaged archive, however tarfile or zlib say so
        raise _unreadable(name, error) from None
    return found


def _unreadable(name: str, error: Exception) -> UserError:
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return UserError(f"{name} is not a readable .tar.gz or .zip archive ({reason}).")


def _zip_members(raw: bytes, name: str, pick: Pick, limits: Mapping[str, int]) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            for member in archive.infolist():
                kept = pick(member.filename, not member.is_dir())
                if kept is None:
                    continue
                limit = limits[kept]
                if member.file_size > limit:
                    raise too_large(f"{name}: member '{member.filename}'", limit, "declares over")
                # zipfile stops at the declared size and checks the CRC, so a header that
                # lies about the size cannot make it read more.
                with archive.open(member) as handle:
                    found[kept] = handle.read(limit + 1)
                if len(found[kept]) > limit:
                    raise too_large(f"{name}: member '{member.filename}'", limit)
    except UserError:
        raise
    except NotImplementedError as error:  # a compression method zipfile does not have
        raise UserError(f"{name}: {error}; repack it as .tar.gz or a plain .zip.") from None
    except Exception as error:  # a damaged archive: BadZipFile, zlib.error, and a negative
        raise _unreadable(name, error) from None  # seek (ValueError) found by tools/fuzz.py
    return found
