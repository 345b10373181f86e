"""Registered data sets (convnet/data/datasets.py, mirrors.py): MNIST real and
verified, fetched from a folder, a checksum mismatch or a --source without the files refused
with nothing written, corrupt cached files named, and each data set's augmentation."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from convnet.cli import main
from convnet.data.datasets import DATASETS, fetch_dataset, load_dataset, sha256_of
from convnet.errors import UserError
from tests.helpers.cli import assert_user_error, run_in_process


def test_mnist_is_real_and_verified(mnist_test):
    assert mnist_test.images.shape == (10_000, 28, 28)
    assert mnist_test.images.dtype.is_floating_point is False
    assert mnist_test.labels.bincount().tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


def test_fetch_from_a_directory_verifies_and_copies(mnist_dir, tmp_path):
    source = mnist_dir / "mnist"
    target = tmp_path / "cache"
    fetch_dataset("mnist", target, source_dir=source)
    for name, digest in DATASETS["mnist"].sha256.items():
        assert sha256_of((target / "mnist" / name).read_bytes()) == digest


def test_checksum_mismatch_is_refused_and_nothing_is_written(mnist_dir, tmp_path, monkeypatch):
    source = tmp_path / "source"
    shutil.copytree(mnist_dir / "mnist", source)
    labels = source / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[100] ^= 1  # one flipped bit
    labels.write_bytes(bytes(data))
    spec = DATASETS["mnist"]
    monkeypatch.setitem(
        DATASETS, "mnist", type(spec)(**{**spec.__dict__, "npm_package": None, "mirrors": ()})
    )
    target = tmp_path / "cache"
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte has the wrong SHA-256"):
        fetch_dataset("mnist", target, source_dir=source)
    assert not (target / "mnist").exists() or not any((target / "mnist").iterdir())


def test_missing_data_says_how_to_fetch(tmp_path):
    with pytest.raises(UserError, match="convnet data fetch mnist"):
        load_dataset("mnist", "test", tmp_path)


def test_corrupt_cached_file_is_named(mnist_dir, tmp_path):
    shutil.copytree(mnist_dir / "mnist", tmp_path / "mnist")
    images = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(UserError, match="t10k-images-idx3-ubyte is corrupt"):
        load_dataset("mnist", "test", tmp_path)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(UserError, match="fashion-mnist, mnist"):
        load_dataset("cifar", "test")


@pytest.fixture
def fallback_that_works(mnist_dir, monkeypatch):
    """MNIST's own sources replaced by one that holds every file (the verified cache, as a
    system package's directory): a --source passed over for it would fetch, and exit 0."""
    spec = DATASETS["mnist"]
    monkeypatch.setitem(
        DATASETS,
        "mnist",
        dataclasses.replace(
            spec, npm_package=None, mirrors=(), system_dirs=(str(mnist_dir / "mnist"),)
        ),
    )


def fetch_cli(capsys, source, cache) -> tuple[int, str]:
    code = main(["data", "fetch", "mnist", "--source", str(source), "--data-dir", str(cache)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("kind", ["empty", "absent", "other files"])
def test_a_source_without_the_files_is_refused_not_passed_over(
    kind, fallback_that_works, tmp_path, capsys
):
    source = tmp_path / "source"
    if kind != "absent":
        source.mkdir()
    if kind == "other files":
        (source / "notes.txt").write_text("not MNIST")
    code, error = fetch_cli(capsys, source, tmp_path / "cache")
    assert code == 2 and "Traceback" not in error, error
    if kind == "absent":
        assert f"--source {source} does not exist; give a directory" in error
    else:
        assert f"--source {source} holds none of mnist's files: looked in it for" in error
        assert all(f"{name}" in error for name in DATASETS["mnist"].sha256), error
    assert "fetched" not in error and not (tmp_path / "cache" / "mnist").exists()


def test_a_source_missing_some_files_is_refused_not_completed_elsewhere(
    mnist_dir, fallback_that_works, tmp_path, capsys
):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(mnist_dir / "mnist" / "t10k-labels-idx1-ubyte", source)
    code, error = fetch_cli(capsys, source, tmp_path / "cache")
    assert code == 2, error
    assert (
        f"Could not fetch mnist from --source {source}: train-images-idx3-ubyte not found" in error
    )
    assert not (tmp_path / "cache" / "mnist").exists()


def test_a_filled_cache_names_the_source_unused_and_still_refuses_a_bad_one(
    mnist_dir, tmp_path, capsys
):
    source = mnist_dir / "mnist"
    code, error = fetch_cli(capsys, source, mnist_dir)  # the cache is complete already
    assert code == 0, error
    assert (
        "all files already present" in error and f"--source {source} not needed, not read" in error
    )
    assert "fetched" not in error
    for bad in (tmp_path / "absent", tmp_path):  # tmp_path: a directory without the files
        code, error = fetch_cli(capsys, bad, mnist_dir)
        assert code == 2 and f"--source {bad}" in error, error


def test_a_file_as_source_of_idx_data_is_refused(tmp_path, capsys):
    (tmp_path / "mnist.tar.gz").write_bytes(b"")
    code = main(
        [
            "data",
            "fetch",
            "mnist",
            "--source",
            str(tmp_path / "mnist.tar.gz"),
            "--data-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert code == 2 and "is a file; give a directory" in capsys.readouterr().err


def test_each_data_set_names_its_augmentation():
    assert DATASETS["cifar10"].augmentation == "crop_flip"
    assert DATASETS["mnist"].augmentation == DATASETS["fashion-mnist"].augmentation == "affine"


def test_corrupt_idx_file_is_a_user_error(mnist_dir, tmp_path, capfd):
    import shutil

    shutil.copytree(mnist_dir / "mnist", tmp_path / "mnist")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00")
    result = run_in_process(capfd, "train", "lenet5", "--data-dir", str(tmp_path))
    assert_user_error(result, "train-labels-idx1-ubyte is corrupt")
