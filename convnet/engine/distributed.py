"""Distributed training with PyTorch's own engine: one process per device, started by torchrun.

The same command runs as one process or under torchrun, which sets RANK, WORLD_SIZE,
LOCAL_RANK, MASTER_ADDR and MASTER_PORT for every process it starts:

    convnet train resnet18 --data DIR                                   # one process
    torchrun --standalone --nproc_per_node 2 -m convnet train resnet18 --data DIR
    torchrun --nnodes 2 --node_rank 0 --nproc_per_node 8 --rdzv_backend c10d \\
        --rdzv_endpoint HOST:29500 -m convnet train resnet18 --data DIR  # node_rank 1 on the other

Without torchrun's variables there is no process group: world size 1, and every helper here
is a no-op. Collectives use gloo on CPUs and NCCL on GPUs (device cuda:LOCAL_RANK).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from convnet.engine.device import resolve_device
from convnet.errors import UserError

BACKENDS = ("auto", "gloo", "nccl")
SETTLE_SECONDS = 0.1  # see stop()
T = TypeVar("T")


@dataclass(frozen=True)
class Session:
    """Where this process stands: its rank among `world_size` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None  # None: one process, no process group

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes logs, checkpoints, metrics and reports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None


class RankError(UserError):
    """A problem of this rank alone (its GPU, its connection), which it reports itself."""


class PeerFailure(UserError):
    """Another rank failed, and it reports why; this rank exits with status 2 quietly."""

    def __init__(self, rank: int):
        super().__init__(f"rank {rank} stopped with an error (its message is above)")
        self.rank = rank


_NOT_STARTED = Session()
_current = _NOT_STARTED


def current() -> Session:
    return _current


def started() -> bool:
    """Whether `start()` has chosen this process's device (and joined its process group)."""
    return _current is not _NOT_STARTED


def is_main() -> bool:
    return _current.is_main


def _environment_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        number = int(value)
    except ValueError:
        raise UserError(
            f"The environment variable {name}={value!r} is not a whole number; torchrun sets "
            "RANK, WORLD_SIZE and LOCAL_RANK, so start distributed runs with torchrun."
        ) from None
    if number < 0:
        raise UserError(f"The environment variable {name} must not be negative, not {number}.")
    return number


def start(device_name: str = "auto", backend: str = "auto", timeout_minutes: float = 30) -> Session:
    """Join the process group torchrun describes in the environment (or none: one process)."""
    global _current
    if backend not in BACKENDS:
        raise UserError(f"Unknown backend '{backend}'; use one of {', '.join(BACKENDS)}.")
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        if backend == "nccl" and not torch.cuda.is_available():
            raise UserError("--backend nccl needs NVIDIA GPUs, and PyTorch sees none here.")
        _current = Session(device=resolve_device(device_name))
        return _current
    rank, world_size = _environment_int("RANK"), _environment_int("WORLD_SIZE")
    local_rank = _environment_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else 0
    if world_size < 1 or rank >= world_size:
        raise UserError(f"RANK {rank} does not fit WORLD_SIZE {world_size}.")
    device = resolve_device(device_name)
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if not (torch.cuda.is_available() and dist.is_nccl_available()):
            raise UserError(
                "--backend nccl needs NVIDIA GPUs and a PyTorch built with NCCL; this machine has "
                "neither. Use --backend gloo (CPUs) or leave --backend auto."
            )
        if device.type != "cuda":
            raise UserError("--backend nccl works on GPUs only; drop --device cpu or use gloo.")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise RankError(
                f"LOCAL_RANK {local_rank} has no GPU: this machine has {count}. Start at most "
                f"{count} processes per machine (torchrun --nproc_per_node {count})."
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size == 1:  # torchrun with one process: nothing to synchronise
        _current = Session(rank, 1, local_rank, device, None)
        return _current
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise UserError(f"{name} is not set; start distributed runs with torchrun.")
    try:
        dist.init_process_group(
            backend,
            rank=rank,
            world_size=world_size,
            timeout=timedelta(minutes=timeout_minutes),
            **({"device_id": device} if backend == "nccl" else {}),
        )
    except (RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise RankError(
            f"Rank {rank} could not join the process group ({backend} at "
            f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}): {first_line}"
        ) from None
    _current = Session(rank, world_size, local_rank, device, backend)
    return _current


def stop() -> None:
    """Leave the process group (safe to call twice, or when none was joined)."""
    global _current
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # tearing down after an error must not hide it
            dist.destroy_process_group()
        # A gloo worker thread frees the last collective's tensors after the collective
        # returns, and needs the GIL to do it. Were the interpreter already shutting down, the
        # thread would be killed inside a C++ destructor: "terminate called without an active
        # exception", exit status -6 (pytorch/pytorch#190489): about 1 run in 13 of
        # tests/engine/test_train_recipes.py's torchrun test. Once DistributedDataParallel has
        # wrapped a model, the group's threads outlive destroy_process_group() (and the
        # wrapper), so nothing joins them; sleeping hands them the GIL.
        time.sleep(SETTLE_SECONDS)
    _current = _NOT_STARTED


@contextlib.contextmanager
def session(device_name: str = "auto", backend: str = "auto") -> Iterator[Session]:
    """`start()`, then `stop()` however the block ends (error, Ctrl-C, or normally)."""
    joined = start(device_name, backend)
    try:
        yield joined
    finally:
        stop()


def _communication_device() -> torch.device:
    return _current.device if _current.backend == "nccl" else torch.device("cpu")


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over all ranks of `values` (a new float64 tensor on the CPU)."""
    summed = values.detach().to(_communication_device(), torch.float64, copy=True)
    if _current.distributed:
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
    return summed.cpu()


def broadcast_object(value: T) -> T:
    """Rank 0's `value` on every rank (any picklable object)."""
    if not _current.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_communication_device())
    return box[0]


def gather_objects(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    if not _current.distributed:
        return [value]
    gathered: list = [None] * _current.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def first_failure(failed: bool) -> int | None:
    """The lowest rank that reports `failed`, or None when no rank does (a collective)."""
    flag = torch.tensor([_current.rank if failed else _current.world_size], dtype=torch.float64)
    if _current.distributed:
        flag = flag.to(_communication_device())
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    lowest = int(flag.item())
    return None if lowest >= _current.world_size else lowest


def together(action: Callable[..., T], *args: object, **kwargs: object) -> T:
    """`action(*args, **kwargs)` on every rank; if it raises a UserError on any rank, the
    lowest such rank raises its error and the others raise PeerFailure, so one message is
    printed and no rank waits forever in a collective the failed one never reaches."""
    error: UserError | None = None
    try:
        result = action(*args, **kwargs)
    except UserError as raised:
        error = raised
    failing = first_failure(error is not None)
    if failing is None:
        return result
    if failing == _current.rank and error is not None:
        raise error
    raise PeerFailure(failing)


def broadcast_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Give every rank rank 0's optimizer buffers (momentum), e.g. after rank 0 resumed."""
    if not _current.distributed:
        return
    state = optimizer.state_dict() if _current.is_main else None
    if state is not None:
        state = {
            "state": {
                index: {
                    key: value.cpu() if isinstance(value, torch.Tensor) else value
                    for key, value in buffers.items()
                }
                for index, buffers in state["state"].items()
            },
            "param_groups": state["param_groups"],
        }
    optimizer.load_state_dict(broadcast_object(state))  # moves buffers to the parameters' device


def average_buffers(model: nn.Module) -> None:
    """Average floating-point buffers (batch-norm running statistics) over the ranks: each
    rank updates them from its own images, so without this the replicas end up different
    (as timm's `distribute_bn(reduce=True)` does)."""
    if not _current.distributed:
        return
    for buffer in model.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer.data, op=dist.ReduceOp.SUM)
            buffer.data /= _current.world_size


def weight_digest(model: nn.Module) -> str:
    """SHA-256 of a model's parameters and buffers, to check that all replicas are equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
