"""Image folders and ILSVRC2012 (issue 5): layouts, labels, decoding, bad input, and
`convnet evaluate MODEL --weights W --data DIR` giving the same scores on every layout."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convnet.data.folders import FolderDataset, open_image_collection
from convnet.data.preparation import evaluation_transform, training_transform
from convnet.engine.metrics import easiest_and_hardest
from convnet.errors import UserError
from tests.helpers.cli import run_in_process
from tests.helpers.folder_data import (
    DEVKIT_IDS,
    WNIDS,
    make_class_folders,
    make_ilsvrc,
    make_split_folders,
)

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def collections(tmp_path_factory) -> dict[str, Path]:
    """The miniature in every layout (generated once: about half a second)."""
    base = tmp_path_factory.mktemp("folders")
    return {
        "split": make_split_folders(base / "split"),
        "classes": make_class_folders(base / "classes"),
        "csv": make_ilsvrc(base / "csv", ground_truth="csv"),
        "devkit": make_ilsvrc(base / "devkit", ground_truth="devkit"),
    }


def _content(collection) -> list[tuple[str, int]]:
    """(SHA-256 of the file, label) of every sample, sorted: the same pixels under any name."""
    return sorted(
        (hashlib.sha256(path.read_bytes()).hexdigest(), label) for path, label in collection.samples
    )


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        ("split", "split-folders"),
        ("classes", "class-folders"),
        ("csv", "ilsvrc"),
        ("devkit", "ilsvrc"),
    ],
)
def test_layouts_are_detected(collections, name, layout):
    for split, expected in (("train", 120), ("val", 40)):
        collection = open_image_collection(collections[name], split)
        assert collection.layout == layout
        assert collection.split == split
        assert collection.classes == WNIDS
        if name != "classes":  # the class-folders count depends on the fraction (below)
            assert len(collection.samples) == expected
        assert collection.skipped == []


def test_ilsvrc_labels_match_the_class_folders(collections):
    """The devkit's ids are deliberately not in sorted order, so a reader that ignored
    meta.mat (or kept the non-leaf synset) would label images wrongly here."""
    reference = _content(open_image_collection(collections["split"], "val"))
    for name in ("csv", "devkit"):
        collection = open_image_collection(collections[name], "val")
        assert collection.ground_truth is not None
        assert _content(collection) == reference
    assert sorted(DEVKIT_IDS.values()) != [DEVKIT_IDS[w] for w in WNIDS]  # the trap is set


def test_split_and_parent_folders_mean_the_same_collection(collections):
    for name in ("split", "devkit"):
        for split in ("train", "val"):
            direct = open_image_collection(collections[name] / split, split)
            assert direct.samples == open_image_collection(collections[name], split).samples


def test_fraction_split_is_seeded_disjoint_and_complete(collections):
    root = collections["classes"]
    train = open_image_collection(root, "train", val_fraction=0.25, seed=3)
    val = open_image_collection(root, "val", val_fraction=0.25, seed=3)
    assert not {p for p, _ in train.samples} & {p for p, _ in val.samples}
    assert len(train.samples) + len(val.samples) == 120
    assert [label for _, label in val.samples] == [c for c in range(5) for _ in range(6)]
    assert open_image_collection(root, "val", val_fraction=0.25, seed=3).samples == val.samples
    other = open_image_collection(root, "val", val_fraction=0.25, seed=4)
    assert {p for p, _ in other.samples} != {p for p, _ in val.samples}


def test_greyscale_and_cmyk_jpegs_decode(tmp_path):
    y, x = np.mgrid[0:30, 0:40]  # smooth colours, which JPEG keeps well
    rgb = np.stack([x * 6, y * 8, 255 - x * 3 - y * 2], axis=-1).astype(np.uint8)
    for cls, mode in (("grey", "L"), ("cmyk", "CMYK"), ("rgb", "RGB")):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for index in range(2):
            Image.fromarray(rgb).convert(mode).save(tmp_path / "data" / cls / f"{index}.jpg")
    collection = open_image_collection(tmp_path / "data", "val", val_fraction=0.5)
    dataset = FolderDataset(collection, evaluation_transform(32, 24, MEAN, STD))
    for index in range(len(dataset)):
        image, label, position = dataset[index]
        assert image.shape == (3, 24, 24) and label >= 0 and position == index
        assert image.std() > 0.1  # real pixels, not the blank of an undecodable file
    plain = FolderDataset(collection, evaluation_transform(40, 40, 0.0, 1.0))
    grey, cmyk, rgb = (plain[collection.classes.index(name)][0] for name in ("grey", "cmyk", "rgb"))
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[0], grey[2])  # L → R = G = B
    assert (cmyk - rgb).abs().mean() < 0.03  # CMYK → RGB gives back the colours (JPEG-lossy)
    luma = (torch.tensor([0.299, 0.587, 0.114])[:, None, None] * rgb).sum(0)  # ITU-R 601-2
    assert (luma - grey[0]).abs().mean() < 0.03


def test_evaluation_transform_matches_torchvision_preset():
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (70, 90, 3), np.uint8))
    ours = evaluation_transform(40, 32, MEAN, STD, InterpolationMode.BICUBIC)(image)
    reference = ImageClassification(
        crop_size=32, resize_size=40, mean=MEAN, std=STD, interpolation=InterpolationMode.BICUBIC
    )(image)
    assert torch.equal(ours, reference)
    crop = training_transform(24, MEAN, STD)(image)
    assert crop.shape == (3, 24, 24)


def test_zero_byte_and_corrupt_files(collections, tmp_path):
    root = shutil.copytree(collections["split"], tmp_path / "copy")
    empty = root / "val" / WNIDS[1] / "empty.JPEG"
    empty.write_bytes(b"")
    corrupt = root / "val" / WNIDS[2] / "corrupt.JPEG"
    corrupt.write_bytes((root / "val" / WNIDS[2] / f"{WNIDS[2]}_10000.JPEG").read_bytes()[:300])
    collection = open_image_collection(root, "val")
    assert collection.skipped == [(empty, "empty file (0 bytes)")]
    assert len(collection.samples) == 41  # the corrupt file is found only when decoded
    dataset = FolderDataset(collection, evaluation_transform(32, 24, MEAN, STD))
    index = [path for path, _ in collection.samples].index(corrupt)
    image, label, _ = dataset[index]
    assert label == -1 and image.shape == (3, 24, 24) and not image.any()
    with pytest.raises(UserError, match="empty.JPEG"):
        open_image_collection(root, "val", strict=True)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "does not exist"),
        ("no-images", "no class folders and no images"),
        ("empty-class", "class folder without any image.*n01443537"),
        ("short-truth", "has 39 entries but .* holds 40"),
        ("short-csv", "has 39 entries but .* holds 40"),
        ("bad-meta", "Cannot read the devkit's .*meta.mat"),
        ("no-meta", "meta.mat .* does not exist"),
        ("no-truth", "no ground truth was found"),
        ("no-val", "has train/ but no val/ folder"),
    ],
)
def test_bad_collections_are_named(collections, tmp_path, damage, message):
    source = (
        "csv"
        if damage == "short-csv"
        else "devkit"
        if "truth" in damage or "meta" in damage
        else "split"
    )
    root = shutil.copytree(collections[source], tmp_path / "copy")
    devkit = root / "ILSVRC2012_devkit_t12" / "data"
    if damage == "missing":
        root = root / "nowhere"
    elif damage == "no-images":
        shutil.rmtree(root / "train"), shutil.rmtree(root / "val")
        (root / "notes.txt").write_text("nothing here")
    elif damage == "empty-class":
        for image in (root / "val" / WNIDS[1]).iterdir():
            image.unlink()
    elif damage == "short-truth":
        lines = (devkit / "ILSVRC2012_validation_ground_truth.txt").read_text().splitlines()
        (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(lines[:-1]))
    elif damage == "short-csv":
        lines = (root / "LOC_val_solution.csv").read_text().splitlines()
        (root / "LOC_val_solution.csv").write_text("\n".join(lines[:-1]) + "\n")
    elif damage == "bad-meta":
        (devkit / "meta.mat").write_bytes(b"MATLAB 5.0 MAT-file, but then nothing useful")
    elif damage == "no-meta":
        (devkit / "meta.mat").unlink()
    elif damage == "no-truth":
        shutil.rmtree(root / "ILSVRC2012_devkit_t12")
    elif damage == "no-val":
        shutil.rmtree(root / "val")
    with pytest.raises(UserError, match=message):
        open_image_collection(root, "val")


# --- evaluation -------------------------------------------------------------------------


def _cli(capsys, *arguments: str) -> tuple[int, str, str]:
    """`convnet ARGUMENTS` in this process (the same parser, dispatch and exit status as the
    command; a subprocess costs seconds of imports on a 2-core machine)."""
    from convnet.cli import main

    code = main(list(arguments))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def lenet_weights(collections, tmp_path_factory) -> Path:
    """lenet5 trained for 8 Adam steps on the miniature (grey, 32×32 as the command prepares
    it): right on some images and wrong on others, so scores depend on every label."""
    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model, get_model_spec

    spec = get_model_spec("lenet5")
    transform = evaluation_transform(37, 32, *spec.normalization, channels=1)
    dataset = FolderDataset(open_image_collection(collections["split"], "train"), transform)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    torch.manual_seed(0)
    model = get_model("lenet5", num_classes=5)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        batch = torch.randperm(len(images))[:40]
        loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("weights") / "lenet5.safetensors"
    save_weights(path, model, {"preparation": "photo"})  # a 1-channel model of photos
    return path


SCORES = (
    "num_examples",
    "top1_error",
    "top5_error",
    "per_class",
    "easiest",
    "hardest",
    "confusions",
)


def test_every_layout_evaluates_identically(collections, lenet_weights, capsys):
    results = {}
    for name in ("split", "csv", "devkit"):
        code, out, err = _cli(
            capsys,
            "evaluate",
            "lenet5",
            "--weights",
            str(lenet_weights),
            "--data",
            str(collections[name]),
            "--precision",
            "fp32",
            "--extremes",
            "2",
            "--json",
        )
        assert code == 0, err
        results[name] = json.loads(out)
    reference = {key: results["split"][key] for key in SCORES}
    assert 0.05 < reference["top1_error"] < 0.75  # neither perfect nor one class for all
    # the classes named hardest are those the rule finds, at most --extremes 2 of them
    accuracy = torch.tensor([row["accuracy"] for row in reference["per_class"]])
    counts = torch.tensor([row["count"] for row in reference["per_class"]])
    _, hardest = easiest_and_hardest(accuracy, counts, 2)
    assert reference["confusions"] and 1 <= len(hardest) <= 2, reference["per_class"]
    assert [row["index"] for row in reference["hardest"]] == hardest
    assert [row["count"] for row in reference["per_class"]] == [8] * 5
    for name in ("csv", "devkit"):
        assert {key: results[name][key] for key in SCORES} == reference, name
    assert results["split"]["layout"] == "split-folders" and results["devkit"]["layout"] == "ilsvrc"
    assert results["split"]["preprocessing"]["resize"] == 37  # 32 / 0.875, as 224 ← 256


@pytest.mark.slow
def test_report_and_skipped_files(collections, lenet_weights, tmp_path, capsys):
    """Through the command itself: a zero-byte and a truncated JPEG are skipped and listed,
    the report shows the easy and hard classes with images; --strict refuses."""
    root = shutil.copytree(collections["devkit"], tmp_path / "ilsvrc")
    (root / "val" / "ILSVRC2012_val_00000003.JPEG").write_bytes(b"")
    damaged = root / "val" / "ILSVRC2012_val_00000005.JPEG"
    damaged.write_bytes(damaged.read_bytes()[:400])
    common = ("evaluate", "lenet5", "--weights", str(lenet_weights), "--data", str(root))
    result = run_in_process(capsys, *common, "--report", str(tmp_path / "report"), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["num_examples"] == 38 and document["num_skipped"] == 2
    reasons = {Path(item["file"]).name: item["reason"] for item in document["skipped"]}
    assert reasons["ILSVRC2012_val_00000003.JPEG"] == "empty file (0 bytes)"
    assert reasons["ILSVRC2012_val_00000005.JPEG"].startswith("cannot be decoded")
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Easy classes" in page and "Hard classes" in page
    # four images of each class that stands apart (each has about 8)
    shown = len(document["easiest"]) + len(document["hardest"])
    assert shown >= 1 and page.count("data:image/jpeg;base64,") >= 4 * shown
    assert "ILSVRC2012_val_00000005" in page
    assert (tmp_path / "report" / "figures" / "per_class.png").stat().st_size > 1000
    assert "figures/confusion.png" in page and "<h2>Confusion matrix</h2>" in page
    assert (tmp_path / "report" / "figures" / "confusion.png").stat().st_size > 1000
    code, _, err = _cli(capsys, *common, "--strict")  # refused while scanning
    assert code == 2 and "ILSVRC2012_val_00000003.JPEG" in err and "--strict" in err
    original = collections["devkit"] / "val" / "ILSVRC2012_val_00000003.JPEG"
    shutil.copy(original, root / "val" / original.name)  # now only the truncated one is bad
    code, _, err = _cli(capsys, *common, "--strict")  # refused once decoding finds it
    assert code == 2 and "ILSVRC2012_val_00000005.JPEG (cannot be decoded" in err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "Data folder .* does not exist"),
        ("no-images", "holds no class folders and no images"),
        ("empty-class", "1 class folder without any image .*: n01443537"),
        ("short-truth", "ground truth .* has 39 entries but .* holds 40"),
        ("bad-meta", "Cannot read the devkit's .*meta.mat"),
        ("zero-byte-strict", "--strict: 1 file.*empty.JPEG \\(empty file"),
    ],
)
def test_bad_input_exits_2_with_the_problem_named(
    collections, lenet_weights, tmp_path, capsys, damage, message
):
    source = "devkit" if damage in ("short-truth", "bad-meta") else "split"
    root = shutil.copytree(collections[source], tmp_path / "copy")
    devkit = root / "ILSVRC2012_devkit_t12" / "data"
    extra = []
    if damage == "missing":
        root = tmp_path / "nowhere"
    elif damage == "no-images":
        shutil.rmtree(root / "train"), shutil.rmtree(root / "val")
    elif damage == "empty-class":
        for image in (root / "val" / WNIDS[1]).iterdir():
            image.unlink()
    elif damage == "short-truth":
        lines = (devkit / "ILSVRC2012_validation_ground_truth.txt").read_text().splitlines()
        (devkit / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(lines[1:]))
    elif damage == "bad-meta":
        (devkit / "meta.mat").write_bytes(b"\x00" * 200)
    elif damage == "zero-byte-strict":
        (root / "val" / WNIDS[0] / "empty.JPEG").write_bytes(b"")
        extra = ["--strict"]
    code, out, err = _cli(
        capsys, "evaluate", "lenet5", "--weights", str(lenet_weights), "--data", str(root), *extra
    )
    assert code == 2 and out == ""
    assert re.search(message, err.replace("\n", " ")), err


@pytest.mark.slow
def test_weights_for_another_class_count_exit_2(collections, tmp_path, capfd):
    """As a user runs it (in this process): exit status 2, one paragraph, no traceback."""
    from convnet.engine.checkpoint import save_weights
    from convnet.models import get_model

    path = tmp_path / "seven.safetensors"
    save_weights(path, get_model("lenet5", num_classes=7))
    result = run_in_process(
        capfd, "evaluate", "lenet5", "--weights", str(path), "--data", str(collections["split"])
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "is for 7 classes, but" in result.stderr and "has 5" in result.stderr
