"""One writer per run directory: a training holds RUN/.writer.lock while it writes the run.

Two `convnet train` on the same --out used to both exit 0 with the folder mixed (steps.csv
with every step twice, a report drawn from both). The lock is the operating system's
(`flock`): it is released when its process ends however it ends, so a kill leaves no lock
that blocks, only the file with the dead writer's name, which the next writer takes over
and says so. The file holds the writer's process id, host, start time and command, which a
second writer's refusal names. Under torchrun only rank 0 writes, so only rank 0 locks.

Within one process the lock is counted, not re-taken: the report written after training
(`convnet train`'s last step) holds it again while training's hold is released. Where the
platform has no `flock` (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from convnet.errors import UserError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".writer.lock"


@dataclass
class _Held:
    handle: IO[str]
    count: int
    made: bool  # the folder was made for this hold: an empty one is removed with the lock


_HELD: dict[str, _Held] = {}


def _key(folder: Path) -> str:
    return str(Path(folder).resolve())


def _holder(text: str) -> dict:
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict) -> str:
    when = holder.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) if when else "?"
    return (
        f"process {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since}: "
        f"{holder.get('command', '?')}"
    )


def acquire(folder: Path, say: Callable[[str], None] = print, made: bool = False) -> None:
    """Hold `folder`'s writer lock (the folder must exist). UserError naming the process that
    holds it; a lock file left by a process that ended is taken over, and `say` says so.
    `made`: the caller has just made the folder, so releasing the lock removes it if it is
    still empty (a training refused before writing anything leaves no empty run directory)."""
    key = _key(folder)
    if key in _HELD:
        _HELD[key].count += 1
        return
    if fcntl is None:
        return
    path = Path(folder) / LOCK_FILE
    while True:
        handle = path.open("a+")  # made if missing, never emptied before it is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _holder(handle.read())
            handle.close()
            raise UserError(
                f"{folder} is being written by another training ({_describe(holder)}). Two "
                "writers would mix its files: wait until that one ends (or stop it; 'convnet "
                f"train --resume {folder}' continues it), or give another --out."
            ) from None
        except OSError as error:  # a file system without locks: go on unlocked, as before
            handle.close()
            say(
                f"Cannot lock {path} ({error.strerror or error}); a second writer would not be stopped."
            )
            return
        # The holder before may have removed the file as it released it: hold the current one.
        try:
            same = os.fstat(handle.fileno()).st_ino == path.stat().st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    handle.seek(0)
    left = _holder(handle.read())
    if left:
        say(f"Took over the writer's lock of {folder} left by {_describe(left)}, which has ended.")
    handle.seek(0)
    handle.truncate()
    me = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": round(time.time()),
        "command": " ".join(["convnet", *sys.argv[1:]])[:300],
    }
    handle.write(json.dumps(me))
    handle.flush()
    _HELD[key] = _Held(handle, 1, made)


def release(folder: Path | str) -> None:
    """Give up one hold of `folder`'s lock; the last removes the file. Nothing if not held."""
    key = _key(Path(folder))
    held = _HELD.get(key)
    if held is None:
        return
    held.count -= 1
    if held.count:
        return
    del _HELD[key]
    with contextlib.suppress(OSError):
        (Path(folder) / LOCK_FILE).unlink()  # while held: a waiter re-checks which file it holds
    held.handle.close()  # closing releases the flock
    if held.made:
        with contextlib.suppress(OSError):
            Path(folder).rmdir()  # only if empty


def holds(folder: Path | str) -> bool:
    """Whether this process holds `folder`'s lock."""
    return _key(Path(folder)) in _HELD


@contextlib.contextmanager
def holding(folder: Path | str, say: Callable[[str], None] = print) -> Iterator[None]:
    """`folder`'s lock for the block (counted: a hold already taken stays)."""
    acquire(Path(folder), say)
    try:
        yield
    finally:
        release(folder)


@contextlib.contextmanager
def released_at_exit() -> Iterator[None]:
    """Every lock first taken inside the block is released when the block ends, however it
    ends (a training that fails after its run directory was locked leaves no hold)."""
    before = set(_HELD)
    try:
        yield
    finally:
        for key in set(_HELD) - before:
            _HELD[key].count = 1
            release(key)
