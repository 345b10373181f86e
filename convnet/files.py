"""Every file the project writes goes through here: atomic writes, and the machine's faults
(a full disk, a read-only file system, no permission, an I/O error) and a destination that
cannot be (a folder on the way is a file, the name is a folder, a place such as /proc where
nothing can be made) turned into one clear message naming the path, the cause and what to
do — exit status 2, never a traceback. The command line adds the option that set the path.

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
    ),
    errno.EROFS: ("the file system is read-only", "Choose a writable place"),
    errno.EACCES: (
        "permission is denied",
        "Choose a folder you may write to, or change its permissions",
    ),
    errno.EPERM: ("the operation is not permitted", "Choose a folder you may write to"),
    errno.EIO: ("the device reported an input/output error", "Check the disk, then try again"),
}


class WriteFailed(UserError):
    """A write the machine refused; its message names the path, the cause and the remedy
    (and `option`, the command-line option that set the path, where it is known)."""

    def __init__(self, path: Path | str, cause: str, advice: str, option: str = "") -> None:
        remedy = f"{advice} (set by {option})" if option else advice
        super().__init__(f"Cannot write {path}: {cause}. {remedy}.")
        self.path, self.cause, self.advice, self.option = Path(path), cause, advice, option

    def set_by(self, option: str) -> WriteFailed:
        """The same refusal, naming the option that set the path, e.g. "--report"."""
        return WriteFailed(self.path, self.cause, self.advice, option)


def explain(error: OSError, path: Path | str | None = None) -> WriteFailed | None:
    """The WriteFailed for a machine fault (see CAUSES), or None for other errors."""
    if error.errno not in CAUSES:
        return None
    cause, advice = CAUSES[error.errno]
    return WriteFailed(path or error.filename or "a file", cause, advice)


# errno of a destination that cannot be made or written, whatever the machine's state:
# explained by `explain_destination` for the writes and folders made here, and only there
# (elsewhere ENOENT, say, is a file to read that is missing, not a place to write).
DESTINATION_ERRORS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EEXIST,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.EINVAL,
    }
)
OTHER_PLACE = "Choose another place"


def first_existing(path: Path) -> Path | None:
    """`path` itself or the nearest of its parents that exists."""
    return next((place for place in (path, *path.parents) if os.path.lexists(place)), None)


def blocking_file(path: Path | str) -> Path | None:
    """The file (not a folder) standing where one of `path`'s folders should be, if any:
    then `path` can be neither written nor made."""
    path = Path(path)
    existing = first_existing(path.parent)
    return existing if existing is not None and not existing.is_dir() else None


def check_destination(path: Path | str) -> None:
    """Refuse at once, before any slow work, a file whose folder cannot be: a file stands in
    the way. Nothing is made."""
    blocker = blocking_file(path)
    if blocker is not None:
        raise WriteFailed(path, f"{blocker} is a file, not a folder", OTHER_PLACE)


def explain_destination(
    error: OSError, path: Path | str, folder: bool = False
) -> WriteFailed | None:
    """The WriteFailed for an error making or writing `path` (a file, or a folder where
    `folder`): a machine fault (`explain`) or a destination that cannot be; None for others."""
    failed = explain(error, path)
    if failed is not None or error.errno not in DESTINATION_ERRORS:
        return failed
    path = Path(path)
    blocker = blocking_file(path)
    if blocker is not None:
        return WriteFailed(path, f"{blocker} is a file, not a folder", OTHER_PLACE)
    if path.is_dir() and not folder:
        return WriteFailed(path, "it is a folder", "Give a file name")
    if path.exists() and not path.is_dir() and folder:
        return WriteFailed(path, "it is a file, not a folder", OTHER_PLACE)
    if error.errno == errno.ENAMETOOLONG:
        return WriteFailed(path, "a name in it is too long for the file system", OTHER_PLACE)
    place = first_existing(path if folder else path.parent) or path.parent
    if error.errno == errno.ENOENT:
        return WriteFailed(
            path,
            f"nothing can be made in {place} (a special file system such "
            "as /proc or /sys, or a folder removed meanwhile)",
            OTHER_PLACE,
        )
    if error.errno == errno.EINVAL:
        return WriteFailed(
            path,
            f"the file system of {place} refuses it (a name it cannot "
            "hold, or a special file system such as /proc)",
            OTHER_PLACE,
        )
    return WriteFailed(path, (error.strerror or str(error)).lower(), OTHER_PLACE)


def make_folder(folder: Path | str) -> Path:
    """`folder` and its parents, made where missing; WriteFailed when they cannot be."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        failed = explain_destination(error, folder, folder=True)
        if failed is not None:
            raise failed from None
        raise
    return folder


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
        failed = explain_destination(error, path) if isinstance(error, OSError) else None
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
    folder = make_folder(folder)
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".convnet-write-test."):
            pass
        free = shutil.disk_usage(folder).free
    except OSError as error:
        failed = explain_destination(error, folder, folder=True)
        if failed is not None:
            raise failed from None
        raise
    if free < needed_bytes:
        raise WriteFailed(
            folder,
            f"{free / 2**20:,.1f} MiB are free there, and {what or 'this job'} needs about "
            f"{needed_bytes / 2**20:,.1f} MiB",
            "Free some space, or choose another place",
        )
