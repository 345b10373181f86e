"""Reader for the IDX format of LeCun's MNIST files (raw or gzip-compressed).

Layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, one type byte, one byte for
the number of dimensions, one big-endian uint32 per dimension, then the data, row-major.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch

from convnet.errors import UserError

# Type byte -> big-endian numpy dtype, from the format's description.
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# Refuse declared sizes no real data set has: a 4-byte header field can claim 16 EiB.
MAX_IDX_BYTES = 2**31


class IdxError(UserError):
    """A file that is not a valid IDX file; the message names the file and the problem."""


def _gunzip_bounded(raw: bytes, name: str) -> bytes:
    """Decompress gzip data, refusing to expand past MAX_IDX_BYTES (a gzip bomb).

    Bytes after the end of the gzip stream are refused, as trailing bytes after a raw IDX
    file's data are: either way the file holds something its header does not describe.
    """
    stream = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    data = stream.decompress(raw, MAX_IDX_BYTES + 1)
    if len(data) > MAX_IDX_BYTES:
        raise IdxError(f"{name}: gzip data expands past {MAX_IDX_BYTES:,} bytes; refusing.")
    if not stream.eof:
        raise IdxError(f"{name}: gzip stream is corrupt or truncated (it ends early).")
    if stream.unused_data:
        raise IdxError(
            f"{name}: has trailing bytes: {len(stream.unused_data):,} bytes follow the end of "
            "the gzip stream."
        )
    return data


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode IDX bytes into a numpy array, checking every header field against the data."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = _gunzip_bounded(raw, name)
        except (OSError, EOFError, zlib.error) as error:
            raise IdxError(f"{name}: gzip stream is corrupt or truncated ({error}).") from None
    if len(raw) < 4:
        raise IdxError(f"{name}: only {len(raw)} bytes, too short for an IDX header.")
    if raw[0] != 0 or raw[1] != 0:
        raise IdxError(
            f"{name}: bad magic number 0x{raw[:4].hex()} (an IDX file starts with two zero bytes)."
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in IDX_TYPES:
        raise IdxError(f"{name}: unknown IDX data type 0x{type_code:02x}.")
    if ndim == 0:
        raise IdxError(f"{name}: IDX header declares zero dimensions.")
    header_length = 4 + 4 * ndim
    if len(raw) < header_length:
        raise IdxError(f"{name}: header declares {ndim} dimensions but the file ends inside it.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = IDX_TYPES[type_code]
    expected = dtype.itemsize * math.prod(shape)  # exact: 255 dimensions can pass 2**1000
    if expected > MAX_IDX_BYTES:
        shown = shape if ndim <= 8 else (*shape[:8], "…")
        raise IdxError(
            f"{name}: header declares shape {shown}, more than {MAX_IDX_BYTES:,} bytes; refusing."
        )
    actual = len(raw) - header_length
    if actual != expected:
        problem = "truncated" if actual < expected else "has trailing bytes"
        raise IdxError(
            f"{name}: {problem}: shape {shape} needs {expected:,} data bytes, file has {actual:,}."
        )
    try:
        return np.frombuffer(raw, dtype=dtype, offset=header_length).reshape(shape)
    except ValueError as error:  # e.g. no data, but dimensions numpy cannot index
        raise IdxError(
            f"{name}: header declares shape {shape[:8]}, which is unusable ({error})."
        ) from None


def idx_to_tensor(raw: bytes, name: str = "<bytes>") -> torch.Tensor:
    """Decode IDX bytes into a tensor of the file's type, in native byte order."""
    array = parse_idx(raw, name)
    return torch.from_numpy(array.astype(array.dtype.newbyteorder("="), copy=True))


def read_idx(path: str | Path) -> torch.Tensor:
    """Read an IDX file (raw or .gz) into a tensor of its native type."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise IdxError(f"{path}: cannot read ({error.strerror}).") from None
    return idx_to_tensor(raw, str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """Encode an array as IDX bytes (used by tests and by tools that write miniatures)."""
    codes = {dtype.newbyteorder("="): code for code, dtype in IDX_TYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = bytes([0, 0, codes[dtype], array.ndim])
    header += b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    big_endian = array.astype(IDX_TYPES[codes[dtype]], copy=False)
    return header + big_endian.tobytes()
