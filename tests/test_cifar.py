"""CIFAR-10 from its binary version, on generated files in that format (tests/cifar_data.py):
fetching from a folder or the official archive's layout, the records read back in R, G, B
order, every kind of damaged source refused with exit status 2 and nothing in the cache, the
crop-and-flip augmentation's statistics, and resnet_mini trained on it and resumed bit-exactly.
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np
import pytest
import torch
from cifar_data import (
    CLASSES,
    make_files,
    register_generated,
    write_archive,
    write_folder,
)
from PIL import Image
from safetensors.torch import load_file

import convnet.engine.train as train_module
from convnet.cli import main
from convnet.data import datasets, mirrors
from convnet.data.cifar import CifarError, parse_batch
from convnet.data.datasets import DATASETS, Archive, load_dataset
from convnet.data.sources import TensorSource
from convnet.data.transforms import AUGMENTATIONS, random_crop_flip
from convnet.engine.config import TrainConfig
from convnet.engine.run import Run
from convnet.engine.train import fit


@pytest.fixture(scope="module")
def generated():
    return make_files(per_file=40)


@pytest.fixture
def registered(generated, monkeypatch):
    files, records = generated
    register_generated(monkeypatch, files)
    return files, records


def fetch(source, cache) -> int:
    return main(["data", "fetch", "cifar10", "--source", str(source), "--data-dir", str(cache)])


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
    assert "is not a readable .tar.gz archive" in capsys.readouterr().err


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


# --- augmentation ---------------------------------------------------------------------


def test_each_data_set_names_its_augmentation():
    assert DATASETS["cifar10"].augmentation == "crop_flip"
    assert DATASETS["mnist"].augmentation == DATASETS["fashion-mnist"].augmentation == "affine"


def test_crop_and_flip_statistics():
    """Each image's crop offset is −4 … +4 pixels in each direction, every offset equally
    likely, the padding is 0, and half the images are mirrored; every output equals the crop
    of the zero-padded image at the offset it shows (decoded from coordinate-coded pixels)."""
    count, side, padding = 9000, 32, 4
    rows = torch.arange(1, side + 1, dtype=torch.float32)[:, None].expand(side, side)
    columns = rows.T
    images = torch.stack([rows, columns, torch.ones(side, side)])[None].expand(count, -1, -1, -1)
    uniform = torch.rand(count, 3, generator=torch.Generator().manual_seed(0))
    out = random_crop_flip(images, uniform, padding)
    assert out.shape == images.shape
    centre = side // 2
    dy = out[:, 0, centre, centre].long() - (centre + 1)
    flipped = out[:, 1, centre, centre + 1] < out[:, 1, centre, centre]
    dx = out[:, 1, centre, centre].long() - torch.where(flipped, side - centre, centre + 1)
    padded = torch.nn.functional.pad(images[0], (padding,) * 4)
    for index in range(0, count, 97):  # the slow way, one image at a time
        top, left = padding + dy[index], padding + dx[index]
        crop = padded[:, top : top + side, left : left + side]
        expected = crop.flip(-1) if flipped[index] else crop
        assert torch.equal(out[index], expected), index
    for offsets in (dy, dx):
        counts = torch.bincount(offsets + padding, minlength=2 * padding + 1)
        assert len(counts) == 2 * padding + 1  # never beyond ±4
        expected, spread = count / 9, 4 * (count * (1 / 9) * (8 / 9)) ** 0.5
        assert ((counts - expected).abs() < spread).all(), counts.tolist()
    assert abs(flipped.float().mean().item() - 0.5) < 4 * (0.25 / count) ** 0.5
    # the padding shows as zeros: an image shifted by 4 has 4 rows of background
    assert (out[:, 2].sum(dim=(1, 2)) == (side - dy.abs()) * (side - dx.abs())).all()


def test_augmentation_is_drawn_per_image_not_per_batch(registered, tmp_path):
    files, records = registered
    assert fetch(write_folder(tmp_path / "source", files), tmp_path / "cache") == 0
    source = TensorSource.from_dataset(
        "cifar10", (3, 32, 32), ((0.0,) * 3, (1.0,) * 3), data_dir=tmp_path / "cache", augment=True
    )
    assert source.channels == 3 and source.augmentation is AUGMENTATIONS["crop_flip"]

    def epoch(batch_size: int) -> torch.Tensor:
        return torch.cat([images for images, _ in source.train_batches(1, batch_size, seed=5)])

    small, large = epoch(7), epoch(64)
    assert torch.equal(small, large)
    assert not torch.equal(small, epoch_unaugmented(source))


def epoch_unaugmented(source: TensorSource) -> torch.Tensor:
    source.augment = False
    try:
        return torch.cat([images for images, _ in source.train_batches(1, 64, seed=5)])
    finally:
        source.augment = True


# --- training -------------------------------------------------------------------------


def test_resnet_mini_trains_on_it_and_resumes_bit_exactly(
    registered, monkeypatch, tmp_path, capsys
):
    files, _ = registered
    cache = tmp_path / "cache"
    assert fetch(write_folder(tmp_path / "source", files), cache) == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    def config(out: str) -> TrainConfig:
        return TrainConfig(
            model="resnet_mini",
            dataset="cifar10",
            data_dir=str(cache),
            epochs=2,
            batch_size=32,
            precision="fp32",
            checkpoint_every=3,
            out=str(tmp_path / out),
        )

    try:
        straight = fit(config("straight"), log=lambda message: None)
        original, calls = train_module.save_checkpoint, []

        class Crash(BaseException):
            """Stands in for the process dying right after a checkpoint write."""

        def save_then_crash(*args, **kwargs):
            original(*args, **kwargs)
            calls.append(1)
            if len(calls) == 2:  # step 6 of 7 per epoch: mid-epoch 1
                raise Crash

        monkeypatch.setattr(train_module, "save_checkpoint", save_then_crash)
        with pytest.raises(Crash):
            fit(config("crashed"), log=lambda message: None)
        monkeypatch.setattr(train_module, "save_checkpoint", original)
        resumed = fit(TrainConfig(), resume=tmp_path / "crashed", log=lambda message: None)
    finally:
        torch.set_num_threads(threads)
    first, second = (
        load_file(tmp_path / name / "model.safetensors") for name in ("straight", "crashed")
    )
    assert first["features.conv1.weight"].shape == (16, 3, 3, 3)  # built for 3 colour planes
    for name, tensor in first.items():
        assert torch.equal(tensor, second[name]), name
    assert resumed["top1_error"] == straight["top1_error"]
    config_saved = Run(tmp_path / "straight").read_config()
    assert config_saved.augment and config_saved.classes == list(CLASSES)
    loaded = Run(tmp_path / "straight").load()
    assert loaded.input_size == (3, 32, 32) and loaded.photos
    assert loaded.normalization == DATASETS["cifar10"].normalization
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "straight"), "--data-dir", str(cache), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top1_error"] == straight["top1_error"]
    # the bare weights, scored on cifar10, are built and normalised for it too
    weights = str(tmp_path / "straight" / "model.safetensors")
    assert (
        main(
            [
                "evaluate",
                "resnet_mini",
                "--weights",
                weights,
                "--dataset",
                "cifar10",
                "--data-dir",
                str(cache),
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["top1_error"] == straight["top1_error"]
    # a colour model is not scored on grey digits
    assert main(["evaluate", str(tmp_path / "straight"), "--dataset", "mnist"]) == 2
    assert "trained on cifar10, images of 3 channel(s), but mnist has 1" in capsys.readouterr().err
    # a photo to classify is read in colour, as photos are
    Image.fromarray(np.full((40, 50, 3), 200, dtype=np.uint8)).save(tmp_path / "photo.png")
    assert main(["predict", str(tmp_path / "straight"), str(tmp_path / "photo.png"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["top"][0]["name"] in CLASSES
