"""Files of a run: atomic writes, safetensors weights, resumable checkpoints.

Nothing here unpickles: our own files are safetensors plus JSON, written reproducibly and
read back by `convnet.engine.weights`, which also reads foreign PyTorch files through
`torch.load(weights_only=True)`, which refuses to run code.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from convnet.engine.weights import read_state_file, safetensors_bytes
from convnet.errors import UserError

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
    """The model's state_dict as safetensors; the same weights and metadata give the same bytes."""
    atomic_write_bytes(path, safetensors_bytes(model.state_dict(), metadata))


def save_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """One file with weights, optimizer buffers and the JSON `state` (epoch, step, RNG, history);
    the same contents give the same bytes."""
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
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata))


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
