"""Generated CIFAR-10 files in the official binary format, and a registry entry for them.

The real files cannot be shipped with the tests; these have the same layout (records of one
label byte and the R, G, B planes of 32×32) with random pixels, so that every reader, check
and the training loop run on bytes written independently of the reader under test. The
fixtures below (`generated`, `registered`) are registered for every test by tests/conftest.py.
"""

from __future__ import annotations

import dataclasses
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from convnet.cli import main
from convnet.data.datasets import DATASETS, sha256_of

CLASSES = DATASETS["cifar10"].class_names
SPLITS = {"train": [f"data_batch_{n}.bin" for n in range(1, 6)], "test": ["test_batch.bin"]}


def make_records(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images (count, 32, 32, 3), as a photo is stored (height, width, RGB),
    and labels 0–9 (count,)."""
    generator = np.random.default_rng(seed)
    images = generator.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    return images, generator.integers(0, 10, size=count, dtype=np.uint8)


def encode(images: np.ndarray, labels: np.ndarray) -> bytes:
    """The binary version's records, written plane by plane without the reader's code: the
    label byte, then 1,024 red, 1,024 green and 1,024 blue bytes, each plane row by row."""
    out = bytearray()
    for image, label in zip(images, labels, strict=True):
        out.append(int(label))
        for channel in range(3):
            out += image[:, :, channel].tobytes()
    return bytes(out)


def make_files(per_file: int = 40, seed: int = 0) -> tuple[dict[str, bytes], dict]:
    """{file name: bytes} of the six batches and batches.meta.txt, and the records written
    ({split: (images (N, 32, 32, 3), labels)})."""
    files, records = {}, {}
    for split, names in SPLITS.items():
        parts = []
        for offset, name in enumerate(names):
            images, labels = make_records(
                per_file, seed * 100 + offset + (10 if split == "test" else 0)
            )
            files[name] = encode(images, labels)
            parts.append((images, labels))
        records[split] = tuple(np.concatenate(column) for column in zip(*parts, strict=True))
    files["batches.meta.txt"] = ("\n".join(CLASSES) + "\n\n").encode()
    return files, records


def write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def write_archive(
    path: Path, files: dict[str, bytes], extra: dict[str, bytes] | None = None
) -> Path:
    """A .tar.gz laid out as the official one: cifar-10-batches-bin/NAME, plus `extra`
    members under the names given (e.g. '../escape')."""
    with tarfile.open(path, "w:gz") as archive:
        folder = tarfile.TarInfo("cifar-10-batches-bin")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        members = {f"cifar-10-batches-bin/{name}": data for name, data in files.items()}
        for name, data in {**members, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def register_generated(monkeypatch, files: dict[str, bytes]) -> None:
    """Make the cifar10 entry expect these files (their SHA-256 and sizes) and download nothing: the
    real entry's checks stay as they are, pointed at other bytes."""
    spec = DATASETS["cifar10"]
    sha256 = {name: sha256_of(files[name]) for name in spec.sha256}
    sizes = {name: len(files[name]) for name in spec.sha256}
    generated = dataclasses.replace(spec, sha256=sha256, sizes=sizes, archive=None)
    monkeypatch.setitem(DATASETS, "cifar10", generated)


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
