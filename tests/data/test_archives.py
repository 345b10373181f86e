"""Bounded decompression (convnet/data/archives.py and its callers in mirrors.py): a gzip
bomb, a huge file, an archive member declaring more than its file holds, a zip, a mirror
sending too much — each stops at the file's published size plus 1 MiB and is refused in one
paragraph with exit status 2, nothing cached."""

from __future__ import annotations

import io
import tarfile
import zipfile
import zlib

import pytest

from convnet.cli import main
from convnet.data import mirrors
from convnet.data.archives import MARGIN_BYTES, TooLarge, gunzip, read_members
from convnet.data.datasets import DATASETS, IDX_SIZES, load_dataset
from convnet.errors import UserError
from tests.helpers.cifar_data import fetch, write_folder

IMAGES = "train-images-idx3-ubyte"


def zeros_gzip(size: int) -> bytes:
    """`size` zero bytes as one gzip stream (about 1,000 to 1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk, out = bytes(2**22), []
    for _ in range(size // len(chunk)):
        out.append(packer.compress(chunk))
    return b"".join([*out, packer.compress(bytes(size % len(chunk))), packer.flush()])


def fetch_mnist(source, cache) -> int:
    return main(["data", "fetch", "mnist", "--source", str(source), "--data-dir", str(cache)])


def test_a_gzip_bomb_among_the_source_files_is_refused_at_its_published_size(tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    bomb = zeros_gzip(400_000_000)  # 400 MB of zeros in about 390 kB
    (source / f"{IMAGES}.gz").write_bytes(bomb)
    assert fetch_mnist(source, tmp_path / "cache") == 2
    error = capsys.readouterr().err
    limit = IDX_SIZES[IMAGES] + MARGIN_BYTES
    assert f"expands past {limit:,} bytes" in error and "decompression bomb" in error, error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert not (tmp_path / "cache" / "mnist").exists()


def test_gunzip_stops_at_its_limit_without_expanding_the_rest():
    with pytest.raises(TooLarge, match="expands past 1,000 bytes"):
        gunzip(zeros_gzip(10_000_000), 1000, "bomb.gz")
    assert gunzip(zeros_gzip(1000), 1000, "exact.gz") == bytes(1000)


def test_a_raw_file_larger_than_published_is_refused_unread(tmp_path, capsys):
    source = tmp_path / "source"
    source.mkdir()
    with (source / IMAGES).open("wb") as handle:  # sparse: takes no disk
        handle.truncate(IDX_SIZES[IMAGES] + 2 * MARGIN_BYTES)
    assert fetch_mnist(source, tmp_path / "cache") == 2
    error = capsys.readouterr().err
    assert f"is {IDX_SIZES[IMAGES] + 2 * MARGIN_BYTES:,} bytes, over" in error, error


def tar_declaring(name: str, size: int) -> bytes:
    """A .tar.gz whose one member declares `size` bytes (its data: zeros, compressed)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = size
        archive.addfile(info, io.BytesIO(bytes(size)))
    return buffer.getvalue()


def test_an_archive_member_larger_than_its_file_is_refused(registered, tmp_path, capsys):
    files, _ = registered
    source = tmp_path / "source.tar.gz"
    source.write_bytes(tar_declaring("cifar-10-batches-bin/data_batch_1.bin", 50_000_000))
    assert fetch(source, tmp_path / "cache") == 2
    error = capsys.readouterr().err
    assert "member 'cifar-10-batches-bin/data_batch_1.bin' declares over" in error, error
    assert not (tmp_path / "cache" / "cifar10").exists()


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(f"cifar-10-batches-bin/{name}", data)
    return buffer.getvalue()


def test_a_zip_source_is_read_and_a_zip_bomb_refused(registered, tmp_path, capsys):
    files, records = registered
    good = tmp_path / "cifar.zip"
    good.write_bytes(zip_of(files))
    assert fetch(good, tmp_path / "cache") == 0
    loaded = load_dataset("cifar10", "test", tmp_path / "cache")
    assert loaded.labels.tolist() == records["test"][1].tolist()
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_of({**files, "data_batch_2.bin": bytes(60_000_000)}))
    assert fetch(bomb, tmp_path / "other") == 2
    assert "member 'cifar-10-batches-bin/data_batch_2.bin' declares over" in capsys.readouterr().err


def test_a_zip_header_that_understates_its_size_cannot_make_it_read_more():
    data = zip_of({"data_batch_1.bin": bytes(5000)})
    # the central directory's uncompressed size of the member, lowered to 100 bytes
    directory = data.rindex(b"PK\x01\x02")
    lowered = data[: directory + 24] + (100).to_bytes(4, "little") + data[directory + 28 :]

    def pick(name: str, is_file: bool) -> str | None:
        return "data_batch_1.bin" if is_file else None

    with pytest.raises(UserError, match="lying.zip is not a readable"):
        read_members(lowered, "lying.zip", pick, {"data_batch_1.bin": 1000})


def test_a_mirror_sending_a_bomb_is_refused(monkeypatch, tmp_path):
    spec = DATASETS["mnist"]
    bomb = zeros_gzip(200_000_000)

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        return io.BytesIO(bomb)

    monkeypatch.setattr(mirrors.urllib.request, "urlopen", urlopen)
    read = mirrors._from_mirror("https://example.invalid/", spec)
    with pytest.raises(TooLarge, match="expands past"):
        read(IMAGES)


def test_a_cached_file_of_the_wrong_size_is_refused_before_it_is_read(registered, tmp_path):
    files, _ = registered
    assert fetch(write_folder(tmp_path / "source", files), tmp_path / "cache") == 0
    path = tmp_path / "cache" / "cifar10" / "test_batch.bin"
    with path.open("r+b") as handle:
        handle.truncate(10**12)  # sparse
    with pytest.raises(Exception, match="bytes where the published file has"):
        load_dataset("cifar10", "test", tmp_path / "cache")
