"""Class folders read file by file (convnet/data/scanning.py, folders.py): every image
format taken by content, each real file counted once whatever the links, everything left
out listed with its reason, and a class too small to be validated named."""

from __future__ import annotations

import json
import os

import pytest

from convnet.data.folders import open_image_collection
from tests.helpers.cli import refused, run_in_process
from tests.helpers.images import ODD_FORMATS, colour_photo, save_as


def photo(path, shade: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour_photo((200 - shade, 40 + shade, 30)).save(path)


def test_every_format_in_a_class_folder_is_taken_and_the_rest_listed(tmp_path):
    root = tmp_path / "data"
    for index in range(3):
        photo(root / "b" / f"{index}.png", index)
    (root / "a").mkdir()
    for name, kind, options in ODD_FORMATS:
        save_as(colour_photo(), root / "a" / name, kind, **options)
    (root / "a" / "README.txt").write_text("photos of a")
    (root / "a" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "a" / "empty.jpg").write_bytes(b"")
    collection = open_image_collection(root, "all")
    taken = sorted(path.name for path, label in collection.samples if label == 0)
    assert taken == sorted(name for name, _, _ in ODD_FORMATS)  # all 8; torchvision's list: 3
    left_out = {path.name: why for path, why in collection.left_out}
    assert left_out == {
        "README.txt": "not an image (Pillow reads none in it)",
        ".DS_Store": "hidden file (its name starts with '.')",
    }
    assert [(path.name, why) for path, why in collection.skipped] == [
        ("empty.jpg", "empty file (0 bytes)")
    ]


@pytest.fixture
def linked(tmp_path):
    """Class a holds 2 images, a link back up to the data folder, a link to class b's
    folder, a second name for one of its files, a link to a folder of 2 images outside the
    data, and a broken link; class b holds 4 images."""
    root, outside = tmp_path / "data", tmp_path / "elsewhere"
    for index in range(2):
        photo(root / "a" / f"a{index}.png", index)
    for index in range(4):
        photo(root / "b" / f"b{index}.png", 10 + index)
    for index in range(2):
        photo(outside / f"x{index}.png", 20 + index)
    os.symlink("..", root / "a" / "up")
    os.symlink("../b", root / "a" / "to-b")
    os.symlink("a0.png", root / "a" / "again.png")
    os.symlink(outside, root / "a" / "more")
    os.symlink("nowhere.png", root / "a" / "broken.png")
    return root


def test_links_count_each_real_file_once(linked):
    collection = open_image_collection(linked, "all")
    names = sorted(
        (path.relative_to(linked).as_posix(), label) for path, label in collection.samples
    )
    assert names == [
        ("a/a0.png", 0),
        ("a/a1.png", 0),
        ("a/more/x0.png", 0),  # a link out of the data folder is followed
        ("a/more/x1.png", 0),
        ("b/b0.png", 1),
        ("b/b1.png", 1),
        ("b/b2.png", 1),
        ("b/b3.png", 1),
    ]
    reasons = {path.name: why for path, why in collection.left_out}
    assert "the data folder or a folder above it (a loop)" in reasons["up"]
    assert reasons["to-b"] == f"a folder already read, as {linked / 'b'}"
    assert reasons["again.png"] == f"the same file as {linked / 'a' / 'a0.png'}"
    assert reasons["broken.png"] == "a broken symbolic link"


def test_links_never_put_one_file_in_both_splits(linked):
    train, val = (
        open_image_collection(linked, split, val_fraction=0.5) for split in ("train", "val")
    )
    real = [os.path.realpath(path) for path, _ in [*train.samples, *val.samples]]
    assert len(real) == len(set(real)) == 8


def test_a_class_too_small_to_validate_is_named_and_refused_with_strict(tmp_path, capsys):
    root = tmp_path / "data"
    photo(root / "lonely" / "only.png")
    for index in range(5):
        photo(root / "many" / f"{index}.png", index)
    collection = open_image_collection(root, "val")
    assert collection.warnings == [
        "Class lonely has 1 image: it needs 2 or more to be both trained on and validated; "
        "add images or remove the class."
    ]
    arguments = ["train", "lenet5", "--data", str(root), "--workers", "0", "--epochs", "1"]
    refused(
        capsys, [*arguments, "--strict", "--out", str(tmp_path / "run")], "--strict: Class lonely"
    )


def test_train_lists_what_it_left_out_and_warns(tmp_path, capfd, one_thread):
    root = tmp_path / "data"
    photo(root / "lonely" / "only.png")
    for index in range(6):
        photo(root / "many" / f"{index}.png", index)
    (root / "many" / "notes.txt").write_text("not a photo")
    result = run_in_process(
        capfd,
        *("train", "lenet5", "--data", str(root), "--workers", "0", "--epochs", "1"),
        *("--precision", "fp32", "--out", str(tmp_path / "run"), "--json"),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["num_left_out"] == 1
    assert document["left_out"] == [
        {
            "file": str(root / "many" / "notes.txt"),
            "reason": "not an image (Pillow reads none in it)",
        }
    ]
    assert any("Class lonely has 1 image" in warning for warning in document["warnings"])
    assert "Left out" in result.stderr and "Warning: Class lonely" in result.stderr
