"""Every file the project writes goes through here: atomic writes, and the machine's faults
(a full disk, a read-only file system, no permission, an I/O error) turned into one clear
message naming the path, the cause and what to do — exit status 2, never a traceback.

A write goes to a temporary file beside its target, is flushed to the disk, then renamed
over the target: a reader sees the old file or the new one, never half of one, and a
write that fails leaves the old file whole.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

from convnet.errors import UserError

PARTIAL_SUFFIX = ".partial"  # a temporary file of `atomic_write_bytes`: ".NAME.XXXXXXXX.partial"

# errno → (the cause in words, what to do about it)
CAUSES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space is left on the device", "Free some space, or choose another place"),
    errno.EDQUOT: ("the disk quota is used up", "Free some space, or choose another place"),
    errno.EFBIG: (
        "the file would grow past the size this process may write (a file-size limit, ulimit -f)",
        "Raise the limit, or choose another place",
    ),  # fmt: skip
    errno.EROFS: ("the file system is read-only", "Choose a writable place"),
    errno.EACCES: (
        "permission is denied",
        "Choose a folder you may write to, or change its permissions",
    ),
    errno.EPERM: ("the operation is not permitted", "Choose a folder you may write to"),
    errno.EIO: ("the device reported an input/output error", "Check the disk, then try again"),
}


class WriteFailed(UserError):
    """A write the machine refused; its message names the path, the cause and the remedy."""

    def __init__(self, path: Path | str, cause: str, advice: str) -> None:
        super().__init__(f"Cannot write {path}: {cause}. {advice}.")
        self.path, self.cause, self.advice = Path(path), cause, advice


def explain(error: OSError, path: Path | str | None = None) -> WriteFailed | None:
    """The WriteFailed for a machine fault (see CAUSES), or None for other errors."""
    if error.errno not in CAUSES:
        return None
    cause, advice = CAUSES[error.errno]
    return WriteFailed(path or error.filename or "a file", cause, advice)


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write `data` to `path` atomically (see the module's docstring); WriteFailed when the
    machine refuses."""
    path = Path(path)
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX
        )
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
        os.replace(temporary, path)
    except BaseException as error:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        failed = explain(error, path) if isinstance(error, OSError) else None
        if failed is not None:
            raise failed from None
        raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path | str, value: object) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def remove_partial_files(directory: Path | str) -> list[Path]:
    """Delete the temporary files that writes cut short by a killed process left behind."""
    removed = []
    for path in Path(directory).glob(f".*{PARTIAL_SUFFIX}"):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def ensure_writable(folder: Path | str, needed_bytes: int = 0, what: str = "") -> None:
    """Before a long job: `folder` exists (it is made), a file can be written in it, and
    about `needed_bytes` are free there; otherwise WriteFailed now rather than hours later."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".convnet-write-test."):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as error:
        failed = explain(error, folder)
        if failed is not None:
            raise failed from None
        raise
    if free < needed_bytes:
        raise WriteFailed(
            folder, f"{free / 2**20:,.1f} MiB are free there, and {what or 'this job'} needs about "
            f"{needed_bytes / 2**20:,.1f} MiB", "Free some space, or choose another place",
        )  # fmt: skip
