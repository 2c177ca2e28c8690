"""Files that hold personal data are private to the user running cxloop: folders ``0700``, files
``0600``, set explicitly so that a permissive umask (``0022`` makes them world-readable) does not
decide. Raw pages hold e-mail addresses and names; landed batches hold what the sources sent.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path | str) -> Path:
    """``mkdir -p path``: every folder it creates, and ``path`` itself, ends ``0700``."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another thread of the same extraction made it
            pass
        os.chmod(folder, DIR_MODE, follow_symlinks=False)
    if path not in missing:
        if path.is_symlink() or not path.is_dir():
            raise NotADirectoryError(f"{path} is not a folder")
        os.chmod(path, DIR_MODE)
    return path


def write_private(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` (created or truncated) with mode ``0600``; never through a link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def create_private(path: Path | str) -> Path:
    """An empty new file with mode ``0600``, for a library (Parquet) to write into: it truncates
    and keeps the mode. Fails when the file exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return Path(path)
