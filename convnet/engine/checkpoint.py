"""Files of a run: safetensors weights and resumable checkpoints, written atomically, and the
state of training a checkpoint holds.

Nothing here unpickles: our own files are safetensors plus JSON, written reproducibly and
read back by `convnet.engine.weight_files`, which also reads foreign PyTorch files through
`torch.load(weights_only=True)`, which refuses to run code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from convnet.engine.weight_files import read_state_file, safetensors_bytes
from convnet.engine.weight_fit import check_values
from convnet.errors import UserError
from convnet.files import atomic_write_bytes


@dataclass
class TrainState:
    """Where training stands: all a checkpoint holds besides the weights and the optimizer's
    buffers. There is no random-generator state to keep: every draw is a function of (seed,
    epoch, image index) or (seed, step, rank), so the position alone resumes them exactly.

    `epoch` epochs are finished, and `batch` steps of the next one; `totals` sums that
    epoch's steps so far (training loss, correct and seen images; None at its start);
    `history` holds one row of metrics.csv per finished epoch."""

    epoch: int = 0
    batch: int = 0
    totals: dict | None = None
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    train_images: int | None = None  # the run's training images: a resumed run needs the same
    grad_scaler: dict = field(default_factory=dict)  # fp16's loss scale; {} otherwise
    global_batch: int | None = None  # images per step, all processes: a resumed run needs the same
    threads: int | None = None  # CPU threads it trained with: a resumed run takes the same

    def step(self, steps_per_epoch: int) -> int:
        """The number of steps taken."""
        return self.epoch * steps_per_epoch + self.batch


def save_weights(path: Path, model: nn.Module, metadata: dict[str, str] | None = None) -> None:
    """The model's state_dict as safetensors; the same weights and metadata give the same bytes."""
    atomic_write_bytes(path, safetensors_bytes(model.state_dict(), metadata))


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    ema: nn.Module | None = None,
) -> None:
    """One file with weights, optimizer buffers, the moving average of the weights (where
    there is one) and the training state as JSON; the same contents give the same bytes."""
    tensors = {f"model.{k}": v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors |= {f"ema.{k}": v.detach().contiguous().cpu() for k, v in ema.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    for index, buffers in optimizer_state["state"].items():
        for key, value in buffers.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optimizer.{index}.{key}"] = tensor.detach().contiguous().cpu()
    metadata = {
        "state": json.dumps(asdict(state)),
        "param_groups": json.dumps(optimizer_state["param_groups"]),
    }
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata))


def load_checkpoint(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, ema: nn.Module | None = None
) -> TrainState:
    """Restore model, optimizer and moving average from `save_checkpoint`'s file; return its
    training state."""
    tensors, metadata = read_state_file(path)
    if "state" not in metadata:
        raise UserError(f"{path} is not a convnet checkpoint (it has no training state).")
    try:
        state = json.loads(metadata["state"])
        if not isinstance(state, dict) or not {"epoch", "batch", "history"} <= set(state):
            raise ValueError("its training state lacks epoch, batch or history")
        known = TrainState.__dataclass_fields__
        state = TrainState(**{key: value for key, value in state.items() if key in known})
        if not all(isinstance(count, int) and count >= 0 for count in (state.epoch, state.batch)):
            raise ValueError("its epoch or batch is not a count")
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        check_values(weights, model.state_dict(), path)  # NaN, infinity, integers: refused
        model.load_state_dict(weights)
        if ema is not None:
            average = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
            check_values(average, ema.state_dict(), path)
            ema.load_state_dict(average)
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
