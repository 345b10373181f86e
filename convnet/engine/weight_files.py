"""Weights files: the one reader, a byte-for-byte reproducible writer, and torchvision's
weights in the hub cache. Loading a file into a model is convnet/engine/weight_fit.py.

Nothing here unpickles: safetensors files are parsed as data, and PyTorch files go through
`torch.load(weights_only=True)`, which refuses to build anything but tensors and plain
containers, so a file cannot run code. The reader accepts what training scripts commonly
save (a bare state_dict, or one under "model", "state_dict" or "model_state_dict", with the
"module." of DataParallel or the "_orig_mod." of torch.compile in front of every key); the
writer gives identical bytes for identical tensors and metadata, in any process.
"""

from __future__ import annotations

import errno
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes

from convnet.errors import UserError
from convnet.files import make_folder

# torchvision weight names look like IMAGENET1K_V1, IMAGENET1K_V2 or DEFAULT.
WEIGHT_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")

# Keys under which training scripts keep the state_dict inside a larger dictionary.
CONTAINER_KEYS = ("model", "state_dict", "model_state_dict")
# Prefixes a wrapper puts in front of every key: DataParallel/DDP, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

# torch dtype -> safetensors dtype name (the format's own spelling).
SAFETENSORS_DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    **{
        getattr(torch, name): label
        for name, label in (
            ("uint16", "U16"),
            ("uint32", "U32"),
            ("uint64", "U64"),
            ("float8_e4m3fn", "F8_E4M3"),
            ("float8_e5m2", "F8_E5M2"),
        )
        if hasattr(torch, name)
    },
}


# --- writing ----------------------------------------------------------------------------


def _little_endian_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's elements in row-major order, each little-endian (the format's order)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    if sys.byteorder == "little" or flat.element_size() == 1:
        return memoryview(flat.view(torch.uint8).numpy())
    integer = {2: torch.int16, 4: torch.int32, 8: torch.int64}[flat.element_size()]
    return memoryview(flat.view(integer).numpy().byteswap())


def safetensors_bytes(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """A safetensors file's bytes, the same for the same tensors and metadata in any process.

    safetensors' own serializer writes the metadata in hash-map order, which changes from
    one process to the next; here the metadata is sorted by key. Tensors are laid out by
    element size, largest first, then by name, and the header is padded with spaces to a
    multiple of 8 bytes (as safetensors does), so every tensor starts at a multiple of its
    element size and can be mapped in place.
    """
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"safetensors metadata must map strings to strings, not {key!r}")
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name!r} is a {type(tensor).__name__}, not a tensor")
        if tensor.dtype not in SAFETENSORS_DTYPES:
            raise ValueError(f"{name!r} has dtype {tensor.dtype}, which safetensors cannot hold")
    order = sorted(tensors, key=lambda name: (-tensors[name].element_size(), name))
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {key: metadata[key] for key in sorted(metadata)}
    chunks, offset = [], 0
    for name in order:
        chunk = _little_endian_bytes(tensors[name])
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[tensors[name].dtype],
            "shape": list(tensors[name].shape),
            "data_offsets": [offset, offset + chunk.nbytes],
        }
        chunks.append(chunk)
        offset += chunk.nbytes
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return b"".join([len(text).to_bytes(8, "little"), text, *chunks])


# --- reading ----------------------------------------------------------------------------


def _is_tensor_dict(value: object) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(key, str) and isinstance(v, torch.Tensor) for key, v in value.items())
    )


def _unwrap_container(loaded: object) -> dict[str, torch.Tensor] | None:
    """The state_dict in `loaded`: itself, or under a container key, up to two levels deep
    (e.g. {"model": {"state_dict": ...}}); None when there is none."""
    for _ in range(3):
        if _is_tensor_dict(loaded):
            return loaded  # type: ignore[return-value]
        if not isinstance(loaded, dict):
            return None
        inner = [loaded[key] for key in CONTAINER_KEYS if isinstance(loaded.get(key), dict)]
        if not inner:
            return None
        loaded = inner[0]
    return None


def strip_wrapper_prefixes(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop "module." and "_orig_mod." (in any combination) when every key starts with it."""
    stripped = True
    while stripped and tensors:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if all(key.startswith(prefix) and len(key) > len(prefix) for key in tensors):
                tensors = {key[len(prefix) :]: value for key, value in tensors.items()}
                stripped = True
    return tensors


def check_weights_file(path: Path | str) -> Path:
    """`path`, which must be a file: UserError for a folder (a run directory's weights are
    its model.safetensors) or nothing there."""
    path = Path(path)
    if path.is_dir():
        raise UserError(
            f"{path} is a folder, not a weights file. For a run directory, give the run itself "
            "(e.g. 'convnet predict RUN_DIR IMAGE') or its model.safetensors."
        )
    if not path.is_file():
        raise UserError(f"Weights file {path} does not exist.")
    return path


def read_state_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, or tensors of a PyTorch file (no code run)."""
    path = check_weights_file(path)
    data = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(data)
        header_length = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_length]).get("__metadata__", {})
        return strip_wrapper_prefixes(tensors), metadata
    except (SafetensorError, ValueError, json.JSONDecodeError) as error:
        if len(data) < 8:
            raise UserError(
                f"{path} holds {len(data)} bytes, too few for any weights file: it is damaged "
                "or truncated; write it again (for a run: 'convnet train --resume' or train "
                "anew)."
            ) from None
        if data[8:10] in (b'{"', b"{'"):  # a safetensors header, damaged
            raise UserError(
                f"{path} is a damaged or truncated safetensors file ({error}); write it again "
                "(for a run: 'convnet train --resume' or train anew)."
            ) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # the restricted unpickler fails on garbage in many ways (an
        # IndexError for a text file); it runs no code, so each means a file it cannot read
        raise UserError(
            f"{path} is neither a safetensors file nor a PyTorch file of plain tensors; refusing "
            f"to load it (nothing in it was run). {_load_failure(error)}"
        ) from None
    tensors = _unwrap_container(loaded)
    if tensors is None:
        raise UserError(
            f"{path} holds no dictionary of tensors (a state_dict), neither at its top nor "
            f"under {', '.join(repr(key) for key in CONTAINER_KEYS)}."
        )
    return strip_wrapper_prefixes(dict(tensors)), {}


def read_weights_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """`read_state_file` for a model's weights: a training checkpoint (the model beside the
    optimizer's state and the run's place, `checkpoint.save_checkpoint`) is refused, saying
    which file holds the weights."""
    tensors, metadata = read_state_file(path)
    if "state" in metadata and "param_groups" in metadata:
        raise UserError(
            f"{path} is a training checkpoint (the model with the optimizer's state, for "
            "'convnet train --resume'), not a weights file: give the model.safetensors beside "
            "it, or the run directory itself."
        )
    return tensors, metadata


def _load_failure(error: Exception) -> str:
    """Why torch.load(weights_only=True) refused a file, in a sentence. PyTorch's own message
    for an unreadable pickle advises loading with weights_only=False, which would run the
    file's code: convnet never does that, so only the unpickler's reason is kept."""
    text = str(error).strip()
    if (isinstance(error, OSError) and error.errno == errno.EINVAL) or "zip archive" in text:
        return "It looks cut short: a PyTorch file is a zip archive, and this one has no end."
    if "WeightsUnpickler error:" in text:  # the reason follows PyTorch's advice
        reason = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0]
        return f"PyTorch's restricted loader says: {reason}."
    return f"Reason: {text.splitlines()[0] if text else type(error).__name__}."


# --- torchvision's weights in the torch hub cache ---------------------------------------


def hub_weights(
    name: str, weights_name: str, *, download: bool = False
) -> tuple[Path, tuple[str, ...]]:
    """The torch hub cache file of torchvision's `weights_name` for model `name`, and the
    weights' class names. Offline by default: a file not in the cache is a UserError; with
    `download` it is fetched into the cache first (see `download_weights`)."""
    import torchvision

    from convnet.models.imagenet import CHALLENGE_ENTRIES

    if name not in CHALLENGE_ENTRIES:
        raise UserError(
            f"{name} has no torchvision weights; '{weights_name}' names torchvision weights. "
            "Give a weights file instead (--weights FILE)."
        )
    enum = torchvision.models.get_model_weights(name)
    if weights_name not in enum.__members__:
        raise UserError(
            f"torchvision has no weights '{weights_name}' for {name}; it has "
            f"{', '.join(enum.__members__)}."
        )
    weights = enum[weights_name]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if not path.is_file() and download:
        download_weights(weights.url, path)
    if not path.is_file():
        raise UserError(
            f"The {name} weights {weights_name} are not in the torch hub cache, and convnet "
            "downloads only when asked: add --download (download=True in Python) to fetch "
            f"them, or fetch {weights.url} where you have internet access and put the file at "
            f"{path} (the hub cache is $TORCH_HOME/hub/checkpoints, by default "
            "~/.cache/torch/hub/checkpoints), or pass a local file with --weights FILE."
        )
    return path, tuple(weights.meta["categories"])


def download_weights(url: str, path: Path) -> None:
    """Fetch torchvision's weight file `url` to `path` (the hub cache), checking the SHA-256
    prefix torchvision puts in its name (resnet18-f37072fd.pth: "f37072fd"), as
    `torch.hub.load_state_dict_from_url(check_hash=True)` does. torch.hub writes a temporary
    file beside `path` and moves it there only when the hash matches, so a failed or
    corrupt download leaves nothing in the cache. UserError on a network failure or a
    wrong hash."""
    import urllib.error

    from torch.hub import HASH_REGEX, download_url_to_file

    match = HASH_REGEX.search(path.name)
    if match is None:
        raise UserError(f"{path.name} carries no hash in its name to check a download against.")
    try:
        make_folder(path.parent)
        download_url_to_file(url, str(path), hash_prefix=match.group(1), progress=False)
    except RuntimeError as error:  # torch.hub's "invalid hash value"
        path.unlink(missing_ok=True)
        raise UserError(
            f"The file downloaded from {url} does not have the SHA-256 its name promises "
            f"({str(error).strip()}); it was discarded and nothing was put in {path.parent}."
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise UserError(
            f"Cannot download {url}: {reason}. Check the connection, or fetch "
            f"the file elsewhere and put it at {path}."
        ) from None


def weights_path(name: str, weights: str, *, download: bool = False) -> Path:
    """`--weights NAME_OR_FILE` as a file: torchvision weights by name from the hub cache
    (fetched first with `download`), else a local file. UserError when neither exists, or
    for `download` with a file (there is nothing to fetch)."""
    path = Path(weights)
    if WEIGHT_NAME.match(weights) and not path.exists():
        return hub_weights(name, weights, download=download)[0]
    check_weights_file(path)
    if download:
        raise UserError(
            f"--download fetches torchvision weights by name (e.g. IMAGENET1K_V1); {weights} "
            "is a local file. Drop --download."
        )
    return path
