"""Finding the image files of class folders: each real file once, whatever the links, and
everything left out listed with its reason.

- Images are recognised by name where the name ends as a format Pillow opens does
  (`image_extensions`: .jpg, .jfif, .png, .gif, .webp, .avif, .heic, .tif, …, in any case),
  and by content otherwise: a file with another name is opened (its header only) and taken
  when Pillow reads an image there. A file that is no image is left out and listed.
- Symbolic links are followed, to files and to folders, wherever they point, with two
  exceptions that are left out and listed: a link to a folder already read in this
  collection (a loop, another class's folder, or a second name for one folder) and a link to
  the data folder itself or a folder above it (a loop that would read everything around).
  A file reached twice (through links or hard links: the same device and inode) is counted
  once, where it is first met (classes in sorted order, paths in sorted order).
- Hidden entries (a name starting with '.') are left out and listed; a hidden folder is
  listed once, unread.

A link that points back up used to make one image count 41 times, score images of other
classes under one class, and put the same file in both the training and validation splits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from convnet.data.decoding import identify, image_extensions


@dataclass
class Scan:
    """Image files found per class folder, and what was left out (path, why)."""

    files: dict[str, list[Path]] = field(default_factory=dict)
    left_out: list[tuple[Path, str]] = field(default_factory=list)


def is_image_name(name: str) -> bool:
    return name.lower().endswith(image_extensions())


def _real(path: Path) -> str:
    return os.path.realpath(path)


class _Walker:
    """One collection's walk: the real folders read and the real files counted so far."""

    def __init__(self, root: Path, class_folders: dict[str, Path]) -> None:
        self.root = _real(root)
        self.scan = Scan()
        self.folders: dict[str, str] = {}  # real folder -> the path it was read under
        self.inodes: dict[tuple[int, int], Path] = {}
        for name in sorted(class_folders):
            self.folders.setdefault(_real(class_folders[name]), str(class_folders[name]))

    def _leave(self, path: Path, why: str) -> None:
        self.scan.left_out.append((path, why))

    def _enters(self, path: Path, link: bool) -> bool:
        """Whether the folder `path` is read: not when it was read already under another
        name, nor when a link leads to the data folder or above it (a loop)."""
        target = _real(path)
        if link and (self.root == target or self.root.startswith(target.rstrip(os.sep) + os.sep)):
            self._leave(path, f"a link to {target}, the data folder or a folder above it (a loop)")
            return False
        if self.folders.setdefault(target, str(path)) != str(path):
            self._leave(path, f"a folder already read, as {self.folders[target]}")
            return False
        return True

    def _file(self, entry: os.DirEntry, path: Path, found: list[Path]) -> None:
        try:
            status = entry.stat()  # follows a link
        except OSError as error:
            self._leave(path, f"cannot be read ({error.strerror or error})")
            return
        if not is_image_name(path.name) and (status.st_size == 0 or identify(path) is None):
            self._leave(path, "not an image (Pillow reads none in it)")
            return
        identity = (status.st_dev, status.st_ino)
        if identity in self.inodes:
            self._leave(path, f"the same file as {self.inodes[identity]}")
            return
        self.inodes[identity] = path
        found.append(path)  # an empty file is listed where the collection is made

    def walk(self, name: str, folder: Path) -> None:
        """The image files under class folder `folder`, recursively, sorted."""
        found: list[Path] = []
        stack = [folder]
        while stack:
            directory = stack.pop()
            try:
                entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
            except OSError as error:
                self._leave(directory, f"cannot be read ({error.strerror or error})")
                continue
            subfolders = []
            for entry in entries:
                path = Path(entry.path)
                if entry.name.startswith("."):
                    kind = "folder" if entry.is_dir() else "file"
                    self._leave(path, f"hidden {kind} (its name starts with '.')")
                elif entry.is_symlink() and not path.exists():
                    self._leave(path, "a broken symbolic link")
                elif entry.is_dir():
                    if self._enters(path, entry.is_symlink()):
                        subfolders.append(path)
                elif entry.is_file():
                    self._file(entry, path, found)
                else:
                    self._leave(path, "not a regular file")
            stack.extend(reversed(subfolders))
        self.scan.files[name] = sorted(found)


def scan_class_folders(root: Path, class_folders: dict[str, Path]) -> Scan:
    """The image files of each class folder (by class name), each real file once, and what
    was left out of them and why."""
    walker = _Walker(root, class_folders)
    for name in sorted(class_folders):
        walker.walk(name, class_folders[name])
    return walker.scan
