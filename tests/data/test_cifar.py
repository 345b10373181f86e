"""CIFAR-10 from its binary version, on generated files in that format
(tests/helpers/cifar_data.py): fetching from a folder or the official archive's layout, the
records read back in R, G, B order, every kind of damaged source refused with exit status 2
and nothing in the cache. Its augmentation is tested in tests/data/test_transforms.py and
test_sources.py, and resnet_mini trained on it in tests/engine/test_train.py."""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import torch

from convnet.cli import main
from convnet.data import datasets, mirrors
from convnet.data.cifar import CifarError, parse_batch
from convnet.data.datasets import DATASETS, Archive, load_dataset
from tests.helpers.cifar_data import (
    CLASSES,
    fetch,
    register_generated,
    write_archive,
    write_folder,
)


@pytest.mark.parametrize("layout", ["folder", "nested folder", "archive"])
def test_fetch_and_read_back_the_records_in_rgb_order(layout, registered, tmp_path):
    files, records = registered
    if layout == "folder":
        source = write_folder(tmp_path / "source", files)
    elif layout == "nested folder":
        source = write_folder(tmp_path / "source" / "cifar-10-batches-bin", files).parent
    else:
        source = write_archive(tmp_path / "cifar-10-binary.tar.gz", files)
    assert fetch(source, tmp_path / "cache") == 0
    for split, (images, labels) in records.items():
        loaded = load_dataset("cifar10", split, tmp_path / "cache")
        assert loaded.images.shape == (len(labels), 3, 32, 32)
        assert loaded.images.dtype == torch.uint8
        # channel 0 is the red plane of the stored (height, width, RGB) image, and so on
        assert np.array_equal(loaded.images.numpy(), images.transpose(0, 3, 1, 2))
        assert loaded.labels.tolist() == labels.tolist()
        assert loaded.class_names == CLASSES


def test_data_list_shows_cifar10(registered, tmp_path, capsys):
    assert main(["data", "list", "--json", "--data-dir", str(tmp_path)]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["cifar10"]["classes"] == 10 and not rows["cifar10"]["cached"]


def damaged(files: dict, kind: str) -> dict:
    """A copy of the files with one problem of the given kind."""
    files = dict(files)
    if kind == "truncated":
        files["data_batch_3.bin"] = files["data_batch_3.bin"][:-10]
    elif kind == "label 10":
        data = bytearray(files["test_batch.bin"])
        data[3073 * 7] = 10  # the label byte of record 7
        files["test_batch.bin"] = bytes(data)
    elif kind == "class names":
        files["batches.meta.txt"] = b"cat\ndog\n"
    return files


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated", "data_batch_3.bin: 122,910 bytes is not a whole"),
        ("label 10", "test_batch.bin: record 7 has label 10"),
        ("class names", "batches.meta.txt names the classes cat, dog"),
    ],
)
@pytest.mark.parametrize("layout", ["folder", "archive"])
def test_malformed_files_are_refused(
    kind, message, layout, generated, monkeypatch, tmp_path, capsys
):
    files = damaged(generated[0], kind)
    register_generated(monkeypatch, files)  # the checksums match: the format check refuses
    if layout == "folder":
        source = write_folder(tmp_path / "source", files)
    else:
        source = write_archive(tmp_path / "source.tar.gz", files)
    assert fetch(source, tmp_path / "cache") == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "cache" / "cifar10").exists()


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../escape.bin", "holds '../escape.bin'"),
        ("/etc/passwd", "holds '/etc/passwd'"),
        ("cifar-10-batches-bin/extra.bin", "holds 'cifar-10-batches-bin/extra.bin'"),
    ],
)
def test_an_archive_with_unexpected_members_is_refused(
    member, message, registered, tmp_path, capsys
):
    files, _ = registered
    source = write_archive(tmp_path / "source.tar.gz", files, extra={member: b"x" * 3073})
    assert fetch(source, tmp_path / "cache") == 2
    error = capsys.readouterr().err
    assert message in error and "refusing the archive" in error
    assert not (tmp_path / "cache" / "cifar10").exists()
    assert not (tmp_path / "escape.bin").exists()


def test_a_file_that_is_no_archive_is_refused(registered, tmp_path, capsys):
    (tmp_path / "source.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    assert fetch(tmp_path / "source.tar.gz", tmp_path / "cache") == 2
    assert "is not a readable .tar.gz or .zip archive" in capsys.readouterr().err


@pytest.mark.parametrize("tampered", [False, True])
def test_the_official_url_is_tried_last_and_its_archive_verified(
    tampered, generated, monkeypatch, tmp_path, capsys
):
    """Offline here: urlopen serves an archive of generated files, registered under their
    size and SHA-256; a download with one byte changed is refused, nothing cached."""
    files, records = generated
    archive = write_archive(tmp_path / "served.tar.gz", files).read_bytes()
    register_generated(monkeypatch, files)
    spec = DATASETS["cifar10"]
    official = Archive(
        url="https://example.invalid/cifar-10-binary.tar.gz",
        size=len(archive),
        sha256=datasets.sha256_of(archive),
    )
    monkeypatch.setitem(DATASETS, "cifar10", dataclasses.replace(spec, archive=official))
    served = archive[:-1] + bytes([archive[-1] ^ 1]) if tampered else archive
    opened = []

    def urlopen(url: str, timeout: float) -> io.BytesIO:
        opened.append(url)
        return io.BytesIO(served)

    monkeypatch.setattr(mirrors.urllib.request, "urlopen", urlopen)
    # a --source given is used or refused, never passed over for the URL
    absent = ["--source", str(tmp_path / "absent")]
    assert main(["data", "fetch", "cifar10", *absent, "--data-dir", str(tmp_path / "cache")]) == 2
    assert "absent does not exist" in capsys.readouterr().err and opened == []
    code = main(["data", "fetch", "cifar10", "--data-dir", str(tmp_path / "cache")])
    assert opened == [official.url]
    if tampered:
        assert code == 2 and "is not the published archive" in capsys.readouterr().err
        assert not (tmp_path / "cache" / "cifar10").exists()
    else:
        assert code == 0
        loaded = load_dataset("cifar10", "test", tmp_path / "cache")
        assert loaded.labels.tolist() == records["test"][1].tolist()


def test_the_real_checksums_refuse_other_bytes(generated, monkeypatch, tmp_path, capsys):
    """The registry's own SHA-256 stay in force: generated files are not CIFAR-10."""
    spec = DATASETS["cifar10"]
    monkeypatch.setitem(DATASETS, "cifar10", type(spec)(**{**spec.__dict__, "archive": None}))
    source = write_folder(tmp_path / "source", generated[0])
    assert fetch(source, tmp_path / "cache") == 2
    assert "data_batch_1.bin has the wrong SHA-256" in capsys.readouterr().err
    assert not (tmp_path / "cache" / "cifar10").exists()


def test_a_damaged_cached_file_is_refused_at_load(registered, tmp_path):
    files, _ = registered
    assert fetch(write_folder(tmp_path / "source", files), tmp_path / "cache") == 0
    path = tmp_path / "cache" / "cifar10" / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(datasets.UserError, match="test_batch.bin is corrupt"):
        load_dataset("cifar10", "test", tmp_path / "cache")


def test_parse_batch_refuses_an_empty_file():
    with pytest.raises(CifarError, match="0 bytes is not a whole"):
        parse_batch(b"", "empty.bin")
