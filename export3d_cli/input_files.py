"""Input files: one check before anything opens or reads them.

Only regular, non-empty, readable files pass. A FIFO would block the first
open() or read forever, a character device (``/dev/zero``, ``/dev/urandom``)
never ends — a zip-archive probe or an image decoder would read it until
memory runs out — and a directory or a symlink loop would surface as a
confusing error deep inside a decoder. Each refusal is one InputError line
naming the file.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from export3d_cli.errors import InputError


def require_regular_file(path: str | os.PathLike[str]) -> Path:
    """``path`` if it is a regular, non-empty file this process can read; else InputError."""
    path = Path(path)
    try:
        status = path.stat()
    except FileNotFoundError:
        problem = "broken symlink (its target does not exist)" if path.is_symlink() else "no such file"
        raise InputError(f"{path}: {problem}") from None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise InputError(f"{path}: symlink loop") from None
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    if stat.S_ISDIR(status.st_mode):
        raise InputError(f"{path}: is a directory")
    if not stat.S_ISREG(status.st_mode):
        raise InputError(f"{path}: not a regular file")
    if status.st_size == 0:
        raise InputError(f"{path}: empty file")
    try:
        with path.open("rb"):
            pass
    except OSError as error:
        raise InputError(f"{path}: cannot read ({error.strerror})") from None
    return path
