"""Files of a run: atomic writes, safetensors weights, resumable checkpoints, safe loading.

Nothing here unpickles: our own files are safetensors plus JSON, and foreign PyTorch files
go through `torch.load(weights_only=True)`, which refuses to run code.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from convnet.errors import UserError

WEIGHTS_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.safetensors"
CONFIG_FILE = "config.json"
PARTIAL_SUFFIX = ".partial"  # a temporary file of `atomic_write_bytes`: ".NAME.XXXXXXXX.partial"


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, flush to disk, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remove_partial_files(directory: Path) -> list[Path]:
    """Delete the temporary files that writes cut short by a killed process left behind."""
    removed = []
    for path in Path(directory).glob(f".*{PARTIAL_SUFFIX}"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, value: object) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def save_weights(path: Path, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    tensors = {
        name: tensor.detach().contiguous().cpu() for name, tensor in model.state_dict().items()
    }
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata=metadata))


def read_state_file(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, or tensors of a PyTorch file (no code run)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Weights file {path} does not exist.")
    data = path.read_bytes()
    try:
        tensors = load_safetensors_bytes(data)
        header_length = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8 : 8 + header_length]).get("__metadata__", {})
        return tensors, metadata
    except (SafetensorError, ValueError, json.JSONDecodeError) as error:
        if data[8:10] in (b'{"', b"{'") or len(data) < 8:  # a safetensors header, damaged
            raise UserError(
                f"{path} is a damaged or truncated safetensors file ({error}); write it again "
                "(for a run: 'convnet train --resume' or train anew)."
            ) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, SafetensorError
    ) as error:  # fmt: skip
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise UserError(
            f"{path} is neither a safetensors file nor a PyTorch file of plain tensors; refusing "
            f"to load it (nothing in it was run). Reason: {first_line}"
        ) from None
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise UserError(f"{path} holds no dictionary of tensors (a state_dict).")
    return loaded, {}


def load_weights(model: nn.Module, path: Path) -> dict[str, str]:
    """Load a weights file into `model`, naming what does not fit."""
    tensors, metadata = read_state_file(path)
    if hasattr(model, "prepare_state_dict"):  # e.g. GoogLeNet drops torchvision's aux heads
        tensors = model.prepare_state_dict(tensors)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = [
        f"{name} {tuple(tensors[name].shape)} vs {tuple(expected[name].shape)}"
        for name in expected
        if name in tensors and tensors[name].shape != expected[name].shape
    ]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing {', '.join(missing[:5])}")
        if unexpected:
            details.append(f"unexpected {', '.join(unexpected[:5])}")
        if wrong_shape:
            details.append(f"wrong shape {', '.join(wrong_shape[:5])}")
        raise UserError(
            f"{path} does not fit this model ({'; '.join(details)}). Was it saved for another "
            "model or class count?"
        )
    model.load_state_dict(tensors)
    return metadata


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """One file with weights, optimizer buffers and the JSON `state` (epoch, step, RNG, history)."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, buffers in optimizer_state["state"].items():
        for key, value in buffers.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optimizer.{index}.{key}"] = tensor.detach().contiguous().cpu()
    metadata = {
        "state": json.dumps(state),
        "param_groups": json.dumps(optimizer_state["param_groups"]),
    }
    atomic_write_bytes(path, save_safetensors_bytes(tensors, metadata=metadata))


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Restore model and optimizer from `save_checkpoint`'s file; return its JSON state."""
    tensors, metadata = read_state_file(path)
    if "state" not in metadata:
        raise UserError(f"{path} is not a convnet checkpoint (it has no training state).")
    try:
        state = json.loads(metadata["state"])
        if not isinstance(state, dict) or not {"epoch", "batch", "history"} <= set(state):
            raise ValueError("its training state lacks epoch, batch or history")
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        buffers: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                buffers.setdefault(int(index), {})[name] = value
        optimizer.load_state_dict(
            {"state": buffers, "param_groups": json.loads(metadata.get("param_groups", "null"))}
        )
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(
            f"{path} does not fit this run's model and optimizer ({reason}). Was it written by "
            "another run?"
        ) from None
    return state
