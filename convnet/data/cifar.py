"""Reader for the official *binary* version of CIFAR-10 (never the pickled Python version).

Layout (Krizhevsky 2009, https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"):
each file is a run of 3,073-byte records with nothing between them: 1 label byte (0–9),
then 3,072 pixel bytes, the 32×32 red plane, then the green, then the blue, each row-major.
data_batch_1.bin … data_batch_5.bin hold the 50,000 training images, test_batch.bin the
10,000 test images, 10,000 records (30,730,000 bytes) each; batches.meta.txt names the
classes, one a line, label i on line i + 1.

The archive cifar-10-binary.tar.gz holds them under cifar-10-batches-bin/ (with a
readme.html). Its members are read into memory by name, each up to its published size
(convnet/data/archives.py), and checked against that list: nothing is extracted to disk, so
a member named ../x or /etc/x can do no harm, and any member outside the list is refused.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from convnet.data.archives import read_members
from convnet.errors import UserError

CHANNELS, SIDE = 3, 32
IMAGE_BYTES = CHANNELS * SIDE * SIDE  # 3,072: red, green, blue planes of 32×32
RECORD_BYTES = 1 + IMAGE_BYTES  # 3,073: one label byte first
ARCHIVE_FOLDER = "cifar-10-batches-bin"
META_FILE = "batches.meta.txt"
# Members of the official archive besides the data files; anything else is refused.
ARCHIVE_EXTRAS = (META_FILE, "readme.html")


class CifarError(UserError):
    """A file that is not valid CIFAR binary data; the message names the file and the problem."""


def parse_batch(raw: bytes, name: str, num_classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one batch file into uint8 images (N, 3, 32, 32), channels R, G, B, and int64
    labels (N,). CifarError for a size that is not a whole number of records (a truncated
    file), an empty file, or a label outside 0 … num_classes − 1."""
    if len(raw) == 0 or len(raw) % RECORD_BYTES:
        raise CifarError(
            f"{name}: {len(raw):,} bytes is not a whole, non-zero number of {RECORD_BYTES:,}-byte "
            "records (1 label byte + 3,072 pixel bytes); the file is truncated or not CIFAR "
            "binary data."
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0]
    bad = np.flatnonzero(labels >= num_classes)
    if len(bad):
        raise CifarError(
            f"{name}: record {bad[0]:,} has label {labels[bad[0]]}, outside 0–{num_classes - 1} "
            f"({len(bad):,} such records); the file is not CIFAR binary data."
        )
    images = records[:, 1:].reshape(-1, CHANNELS, SIDE, SIDE)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def parse_class_names(raw: bytes, name: str = META_FILE) -> tuple[str, ...]:
    """The class names of batches.meta.txt, one a line (blank lines, such as the official
    file's last one, left out). CifarError for a file that is not ASCII text."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise CifarError(f"{name} is not ASCII text, as CIFAR's list of class names is.") from None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def read_archive(raw: bytes, limits: Mapping[str, int], name: str) -> dict[str, bytes]:
    """The members of a .tar.gz, plain .tar or .zip named in `limits` (by file name), read
    into memory, each at most its limit in bytes (convnet/data/archives.py). Members may lie
    at the top or under cifar-10-batches-bin/. CifarError for a member that is not a plain
    file or directory of that list (a path with .., an absolute path, a link, a device, or
    any other name); a UserError for an archive that cannot be read or a member too large."""
    allowed = set(limits) | set(ARCHIVE_EXTRAS)

    def pick(member: str, is_file: bool) -> str | None:
        parts = member.removeprefix("./").rstrip("/").split("/")
        if not is_file and parts == [ARCHIVE_FOLDER]:
            return None
        inside = parts[1:] if len(parts) == 2 and parts[0] == ARCHIVE_FOLDER else parts
        if not is_file or len(inside) != 1 or inside[0] not in allowed:
            raise CifarError(
                f"{name} holds '{member}', which is not one of CIFAR-10's files (a plain file "
                f"{', '.join(sorted(allowed))}, at the top or under {ARCHIVE_FOLDER}/); "
                "refusing the archive."
            )
        return inside[0] if inside[0] in limits else None

    return read_members(raw, name, pick, limits)
