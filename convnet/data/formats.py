"""File formats of the registered data sets: which files make each split, how one file is
checked before it enters the cache, and how a split's files become tensors.

A data set's registry entry (convnet/data/datasets.py) names its format; fetching and
loading ask the format rather than branching on the data set's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from convnet.data import cifar
from convnet.data.idx import idx_to_tensor, parse_idx
from convnet.errors import UserError

Files = list[tuple[str, bytes]]  # (the file's path or name, for messages; its bytes)


@dataclass(frozen=True)
class FileFormat:
    """How a data set's files are laid out.

    `check(name, data, class_names)` raises a UserError naming a malformed file;
    `decode(files, class_names)` turns one split's files into uint8 images (N, H, W) or
    (N, C, H, W) and int64 labels (N,). `folder` is the folder an archive or a download keeps
    the files in (a --source directory may hold them directly or under it); `read_archive`
    reads the wanted files of an archive into memory, each up to its byte limit (None: the
    format has no archive);
    `optional` files are checked where a source has them but are not needed."""

    split_files: dict[str, tuple[str, ...]]
    check: Callable[[str, bytes, tuple[str, ...]], None]
    decode: Callable[[Files, tuple[str, ...]], tuple[torch.Tensor, torch.Tensor]]
    source_hint: str  # what to give --source, for the message when no source has the files
    folder: str | None = None
    read_archive: Callable[[bytes, Mapping[str, int], str], dict[str, bytes]] | None = None
    optional: tuple[str, ...] = ()


def _check_idx(name: str, data: bytes, class_names: tuple[str, ...]) -> None:
    parse_idx(data, name)


def _decode_idx(files: Files, class_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    (images_name, images_data), (labels_name, labels_data) = files
    images, labels = (
        idx_to_tensor(images_data, images_name),
        idx_to_tensor(labels_data, labels_name),
    )
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise UserError(
            f"{images_name}: images {tuple(images.shape)} and labels "
            f"{tuple(labels.shape)} do not match."
        )
    return images, labels.long()


def _check_cifar(name: str, data: bytes, class_names: tuple[str, ...]) -> None:
    if name.endswith(cifar.META_FILE):
        listed = cifar.parse_class_names(data, name)
        if listed != class_names:
            raise cifar.CifarError(
                f"{name} names the classes {', '.join(listed)}, not {', '.join(class_names)}."
            )
    else:
        cifar.parse_batch(data, name, len(class_names))


def _decode_cifar(files: Files, class_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    batches = [cifar.parse_batch(data, name, len(class_names)) for name, data in files]
    return torch.cat([images for images, _ in batches]), torch.cat(
        [labels for _, labels in batches]
    )


FORMATS: dict[str, FileFormat] = {
    # LeCun's IDX files, raw or gzip-compressed (convnet/data/idx.py).
    "idx": FileFormat(
        split_files={
            "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        },
        check=_check_idx,
        decode=_decode_idx,
        source_hint="a directory holding the four IDX files (raw or .gz)",
    ),
    # CIFAR's binary version (convnet/data/cifar.py).
    "cifar-binary": FileFormat(
        split_files={
            "train": tuple(f"data_batch_{number}.bin" for number in range(1, 6)),
            "test": ("test_batch.bin",),
        },
        check=_check_cifar,
        decode=_decode_cifar,
        source_hint="the official cifar-10-binary.tar.gz, or a directory holding its .bin "
        "files (directly or under cifar-10-batches-bin/)",
        folder=cifar.ARCHIVE_FOLDER,
        read_archive=cifar.read_archive,
        optional=(cifar.META_FILE,),
    ),
}
