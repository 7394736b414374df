"""Atomic output files: write to a temporary name in the same folder, rename on success.

An interrupted or failed write (exception, Ctrl-C, SIGTERM, full disk) never
leaves a truncated file under the target name; the temporary file is removed.
Output folders are created by :func:`make_folders`, which records them, so a
failed command can remove again those that are still empty
(:class:`CreatedFolders`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType

# Temporary names are ".{name}.{random}{suffix}"; a name longer than this (in UTF-8 bytes) is replaced by a digest
# so that the temporary name stays within the usual 255-byte limit even when the target's name is at it.
MAX_NAME_IN_TEMP = 100


def temp_prefix(target: Path) -> str:
    """The hidden prefix for ``target``'s temporary files (see MAX_NAME_IN_TEMP)."""
    name = target.name
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_IN_TEMP:
        name = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return f".{name}."


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on a clean exit it replaces ``target``."""
    target = Path(target)
    make_folders(target.parent)
    with _storage_errors(target):
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with _storage_errors(target):
            yield tmp
            # mkstemp creates 0600; give the result the permissions a plain open() would (0666 minus the umask).
            umask = os.umask(0)
            os.umask(umask)
            if tmp.exists():
                tmp.chmod(0o666 & ~umask)
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# What the storage can say while an output is written, and how to put it in one line.
_STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
}


@contextlib.contextmanager
def _storage_errors(target: Path) -> Iterator[None]:
    """A full disk (or quota, or read-only file system) while writing ``target``: one OutputError line."""
    from export3d_cli.errors import OutputError

    try:
        yield
    except OSError as error:
        if error.errno not in _STORAGE_ERRNOS:
            raise
        raise OutputError(f"{target}: cannot write it ({_STORAGE_ERRNOS[error.errno]}); nothing was written") from error


def atomic_write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name one file: the same path, a symlink to it, or a hard link (same device and inode)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet): then they cannot be one file
        return False


def prepare_output_file(target: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Check, before any work, that ``target`` can be written: it is not a directory, device, pipe or socket, its
    folder exists (or is created) and is writable, and it is none of ``inputs`` (by any name: symlinks and hard
    links count).

    Raises UsageError (exit 2) naming the path; a long job then never fails only at its very end, and never
    replaces a file it reads.
    """
    from export3d_cli.errors import UsageError

    target = Path(target)
    for source in inputs:
        if same_file(source, target):
            raise UsageError(f"{target}: is also an input ({source}); writing it would destroy that file")
    if target.is_dir():
        raise UsageError(f"{target}: is a directory; give a file name")
    if target.exists() and not target.is_file():
        # Writing replaces the target by renaming over it: a device, pipe or socket would be replaced, not written.
        raise UsageError(f"{target}: is not a regular file (a device, pipe or socket); give a file path")
    parent = target.parent
    try:
        make_folders(parent)
    except FileExistsError:
        raise UsageError(f"{target}: cannot create the output folder {parent} (a file has that name)") from None
    except OSError as error:
        raise UsageError(f"{target}: cannot create the output folder {parent} ({error.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{target}: the output folder {parent} is not writable")
    return target


_open_scopes: list[CreatedFolders] = []


class CreatedFolders:
    """Records the folders :func:`make_folders` creates while the ``with`` block is open.

    :meth:`remove_empty` removes them again, deepest first, but only those that are still empty and still the
    folder that was created (a folder that existed before is never recorded); a failed command calls it so that
    it leaves no empty output folders behind.
    """

    def __init__(self) -> None:
        self._created: list[tuple[Path, int, int]] = []  # (absolute path, st_dev, st_ino), in creation order

    def __enter__(self) -> CreatedFolders:
        _open_scopes.append(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _open_scopes.remove(self)

    def record(self, folder: Path) -> None:
        info = folder.stat()
        self._created.append((folder.absolute(), info.st_dev, info.st_ino))

    def remove_empty(self) -> None:
        while self._created:
            folder, device, inode = self._created.pop()
            with contextlib.suppress(OSError):  # gone, not empty, or not ours to remove: keep it
                info = folder.lstat()
                if stat.S_ISDIR(info.st_mode) and (info.st_dev, info.st_ino) == (device, inode):
                    folder.rmdir()


def make_folders(folder: str | Path) -> None:
    """``Path(folder).mkdir(parents=True, exist_ok=True)`` that records each folder it creates in every open
    :class:`CreatedFolders`."""
    folder = Path(folder)
    missing = []
    for path in (folder, *folder.parents):
        if path.is_dir():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise
            continue  # made by someone else in the meantime: not ours to remove
        for scope in _open_scopes:
            scope.record(path)
