"""`convnet data shard DIR --out OUT`: every layout --data reads, written as WebDataset tar
shards with a manifest that other readers of the format (the webdataset package) read too."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import webdataset

from convnet.data.folders import open_image_collection
from convnet.data.shard_manifest import open_shards, sha256_of
from convnet.data.shard_writer import parse_shard_size
from convnet.errors import UserError
from tests.helpers.cli import cli, refused
from tests.helpers.folder_data import make_class_folders, make_ilsvrc, make_split_folders
from tests.helpers.shard_data import make_shards, manifest


@pytest.fixture(scope="module")
def split_folders(tmp_path_factory) -> Path:
    return make_split_folders(tmp_path_factory.mktemp("split") / "data", 4, 2)


@pytest.fixture(scope="module")
def shards(split_folders, tmp_path_factory) -> Path:
    return make_shards(split_folders, tmp_path_factory.mktemp("shards") / "out", "3")


def _read_with_webdataset(out: Path, split: str) -> list[dict]:
    names = [shard["name"] for shard in manifest(out)["splits"][split]["shards"]]
    pattern = str(out / f"{split}-{{{names[0][-10:-4]}..{names[-1][-10:-4]}}}.tar")
    return list(webdataset.WebDataset(pattern, shardshuffle=False))


def _folder_samples(root: Path, split: str, **options) -> list[tuple[bytes, int]]:
    collection = open_image_collection(root, split, **options)
    return [(path.read_bytes(), label) for path, label in collection.samples]


def test_shards_hold_the_folder_as_webdataset_reads_them(split_folders, shards):
    """Each split's image files, bytes unchanged, with their class index; validation in the
    folder's order, training in a seeded order; counts and SHA-256 as the manifest says."""
    document = manifest(shards)
    assert document["classes"] == list(open_image_collection(split_folders, "train").classes)
    for split in ("train", "val"):
        expected = _folder_samples(split_folders, split)
        entries = document["splits"][split]["shards"]
        assert len(entries) == math.ceil(len(expected) / 3)
        assert document["splits"][split]["images"] == len(expected)
        for entry in entries:
            assert entry["images"] <= 3
            assert entry["bytes"] == (shards / entry["name"]).stat().st_size
            assert entry["sha256"] == sha256_of(shards / entry["name"])
        samples = _read_with_webdataset(shards, split)
        assert sum(entry["images"] for entry in entries) == len(samples)
        read = [(sample["jpg"], int(sample["cls"])) for sample in samples]
        assert sorted(read) == sorted(expected)  # every image once, with its label
        files = [json.loads(sample["json"])["file"] for sample in samples]
        assert all(file.startswith(f"{split}/") for file in files)
        if split == "val":
            assert read == expected  # the folder's order: image i is the folder's image i
        else:
            assert read != expected  # classes mixed across the shards
        assert [sample["__key__"] for sample in samples] == [f"{i:08d}" for i in range(len(read))]


def test_shards_of_class_folders_split_as_data_does(tmp_path):
    root = make_class_folders(tmp_path / "classes", 5)
    out = make_shards(root, tmp_path / "out", "100", val_fraction=0.4, seed=3)
    for split in ("train", "val"):
        expected = _folder_samples(root, split, val_fraction=0.4, seed=3)
        read = [(s["jpg"], int(s["cls"])) for s in _read_with_webdataset(out, split)]
        assert sorted(read) == sorted(expected)
    assert manifest(out)["written_from"]["val_fraction"] == 0.4


def test_shards_of_ilsvrc_carry_the_ground_truth(tmp_path):
    root = make_ilsvrc(tmp_path / "ilsvrc", 2, 2, ground_truth="csv")
    out = make_shards(root, tmp_path / "out", "100")
    read = [(s["jpg"], int(s["cls"])) for s in _read_with_webdataset(out, "val")]
    assert read == _folder_samples(root, "val")
    assert manifest(out)["written_from"]["layout"] == "ilsvrc"


def test_shard_size_in_bytes_and_the_same_shards_twice(split_folders, tmp_path):
    first = make_shards(split_folders, tmp_path / "first", "20KB")
    second = make_shards(split_folders, tmp_path / "second", "20KB")
    entries = manifest(first)["splits"]["train"]["shards"]
    assert len(entries) > 1
    assert all(entry["bytes"] <= 20_000 or entry["images"] == 1 for entry in entries)
    assert manifest(first)["splits"] == manifest(second)["splits"]  # bytes, names, SHA-256


def test_a_pattern_names_the_shards_read(shards):
    chosen = open_shards(str(shards / "{train-{000000..000001},val-000000}.tar"))
    assert [s.name for s in chosen.shards["train"]] == ["train-000000.tar", "train-000001.tar"]
    assert [s.name for s in chosen.shards["val"]] == ["val-000000.tar"]
    assert chosen.shards["train"][1].offset == 3  # an image keeps its place in its split
    with pytest.raises(UserError, match="lists no shard named train-000099.tar"):
        open_shards(str(shards / "train-{000000,000099}.tar"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1000", (1000, None)), ("256MB", (None, 256_000_000)), ("1 GiB", (None, 2**30))],
)
def test_shard_size_is_images_or_bytes(text, expected):
    assert parse_shard_size(text) == expected


def test_the_command_writes_and_refuses(split_folders, tmp_path, capsys):
    out = tmp_path / "out"
    result = json.loads(
        cli(capsys, "data", "shard", str(split_folders), "--out", str(out), "--json")
    )
    assert result["train"] == {"images": 20, "shards": 1} and result["classes"] == 5
    refused(capsys, ["data", "shard", str(split_folders), "--out", str(out)], "already holds")
    other = ["data", "shard", str(split_folders), "--out", str(tmp_path / "other")]
    refused(capsys, [*other, "--shard-size", "lots"], "--shard-size")
    refused(capsys, [*other, "--shard-size", "0"], "--shard-size")
    refused(capsys, [*other, "--val-fraction", "0.3"], "has its own val split")
    refused(capsys, [*other, "--val-fraction", "1.5"], "between 0 and 1")
    refused(capsys, [*other, "--ground-truth", str(out)], "--ground-truth")
    refused(
        capsys,
        ["data", "shard", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        "does not exist",
    )


def test_an_image_named_as_no_format_is_stored_by_its_content(tmp_path):
    """A folder's images are judged by content: one named `photo.data` (a JPEG) becomes
    KEY.jpg in its shard, which webdataset and --data read as an image."""
    root = make_split_folders(tmp_path / "data", 2, 1)
    first = sorted((root / "val").rglob("*.JPEG"))[0]
    first.rename(first.with_name("photo.data"))
    out = make_shards(root, tmp_path / "out", "100")
    samples = _read_with_webdataset(out, "val")
    renamed = [s for s in samples if json.loads(s["json"])["file"].endswith("photo.data")]
    assert len(renamed) == 1 and "jpg" in renamed[0]
    assert manifest(out)["splits"]["val"]["images"] == len(samples)
    assert len(samples) == len(open_image_collection(root, "val"))
