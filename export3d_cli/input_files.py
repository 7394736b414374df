"""Input files: checks that run before anything decodes them.

:func:`require_regular_file` passes only regular, non-empty, readable files. A FIFO would block the first
open() or read forever, a character device (``/dev/zero``, ``/dev/urandom``) never ends — a zip-archive probe
or an image decoder would read it until memory runs out — and a directory or a symlink loop would surface as a
confusing error deep inside a decoder.

:func:`check_npz_sizes` bounds what ``np.load`` would allocate for an ``.npz``: it reads the zip directory and
the ``.npy`` header at the start of each member, never an array. ``np.load`` trusts a member's header and
allocates the whole declared shape up front, so a 3 KB archive can ask for 200 GB; a compressed member can also
inflate a few hundred KB into hundreds of MB of real data. (``mmap_mode`` is no help: it is ignored inside an
archive.)

Each refusal is one InputError line naming the file.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from export3d_cli.errors import InputError

# Whatever a caller allows, no member of an .npz may unpack to more than this (1 GiB): above the largest array
# the project reads (a dataset clip's params may declare 819 MB in all), and still small enough to load on any
# machine that runs the model.
MAX_NPZ_MEMBER_BYTES = 1 << 30

# Bytes a member may hold beyond its header and declared array. numpy writes exactly header + data; a little room
# is left for another writer's padding. Anything more is data np.load would never read: a zip bomb, not an array.
_NPZ_MEMBER_SLACK = 64 * 1024
# numpy's .npy header: 6-byte magic, 2-byte version, 2- or 4-byte length, then at most this many header bytes
# (read_array_header's max_header_size, which it enforces).
_NPY_MAX_HEADER_BYTES = 10_000
_NPY_PREFIX_BYTES = 12


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


def check_npz_sizes(
    path: Path,
    limits: Mapping[str, int],
    *,
    others: int | None = None,
    total: int | None = None,
    why: str = "",
) -> None:
    """Refuse an ``.npz`` whose arrays ``np.load`` would make larger than the caller can expect; decodes no array.

    ``limits`` maps array names (keys, without ``.npy``) to the most bytes each may declare; ``others`` applies
    to every other member (``None``: the caller never loads them, so only :data:`MAX_NPZ_MEMBER_BYTES` does), and
    ``total`` to all members together. ``why`` says where the limits come from, for the message. A member must
    also unpack to no more than its header and declared array need. Damaged archives and headers raise what
    ``zipfile`` and ``numpy.lib.format`` raise (``BadZipFile``, ``zlib.error``, ``ValueError``, ``EOFError``),
    for the caller to report as it reports ``np.load``'s errors.
    """
    note = f" ({why})" if why else ""
    declared_total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            limit = min(limits.get(key, MAX_NPZ_MEMBER_BYTES if others is None else others), MAX_NPZ_MEMBER_BYTES)
            if info.filename.endswith(".npy"):
                declared = _declared_npy_bytes(archive, info, path, limit, note)
            else:
                declared = info.file_size  # np.load hands other members out as raw bytes
                if declared > limit:
                    raise InputError(
                        f"{path}: member {info.filename!r} unpacks to {_bytes(declared)}, over the {_bytes(limit)} "
                        f"limit for it{note}"
                    )
            declared_total += declared
            if total is not None and declared_total > total:
                raise InputError(
                    f"{path}: its arrays declare at least {_bytes(declared_total)} together, over the {_bytes(total)} "
                    f"limit{note}"
                )


def _declared_npy_bytes(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, limit: int, note: str) -> int:
    """The bytes one ``.npy`` member's header declares, after checking them and its unpacked size against ``limit``."""
    key = info.filename.removesuffix(".npy")
    # Checked before inflating anything, so a bomb costs no more than its first bytes.
    if info.file_size > limit + _NPY_PREFIX_BYTES + _NPY_MAX_HEADER_BYTES + _NPZ_MEMBER_SLACK:
        raise InputError(
            f"{path}: array {key!r} unpacks to {_bytes(info.file_size)}, over the {_bytes(limit)} limit for it{note}"
        )
    shape, dtype, header_end = _npy_header(archive, info, path)
    declared = math.prod(shape) * dtype.itemsize  # Python ints: a hostile shape cannot overflow
    described = f"[{', '.join(map(str, shape))}] {dtype.name}"
    if declared > limit:
        raise InputError(
            f"{path}: array {key!r} declares {described} = {_bytes(declared)}, over the {_bytes(limit)} limit "
            f"for it{note}"
        )
    if info.file_size > header_end + declared + _NPZ_MEMBER_SLACK:
        raise InputError(
            f"{path}: array {key!r} unpacks to {_bytes(info.file_size)}, far more than its {described} needs "
            f"({_bytes(header_end + declared)}); not an array numpy wrote"
        )
    return declared


def _npy_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length in bytes) of one ``.npy`` member, from its first bytes only."""
    try:
        member = archive.open(info)
    except (NotImplementedError, RuntimeError) as error:
        # An unsupported compression method or an encrypted member: np.load would fail the same way, less clearly.
        raise InputError(f"{path}: cannot unpack member {info.filename!r} ({error})") from None
    with member:
        version = np.lib.format.read_magic(member)
        # Version 3 differs from 2 only in encoding field names as UTF-8, which cannot change the array's size.
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(member)
        return tuple(int(n) for n in shape), dtype, member.tell()


def _bytes(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB" if count >= 1e6 else f"{count:,} bytes"
