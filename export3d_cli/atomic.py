"""Atomic output files: write to a temporary name in the same folder, rename on success.

An interrupted or failed write (exception, Ctrl-C, full disk) never leaves a
truncated file under the target name; the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600; give the result the permissions a plain open() would (0666 minus the umask).
        umask = os.umask(0)
        os.umask(umask)
        if tmp.exists():
            tmp.chmod(0o666 & ~umask)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


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
    """Check, before any work, that ``target`` can be written: its folder exists (or is created) and is writable,
    and it is none of ``inputs`` (by any name: symlinks and hard links count).

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
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise UsageError(f"{target}: cannot create the output folder {parent} (a file has that name)") from None
    except OSError as error:
        raise UsageError(f"{target}: cannot create the output folder {parent} ({error.strerror})") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"{target}: the output folder {parent} is not writable")
    return target
