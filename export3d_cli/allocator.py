"""glibc's allocator, told to keep freed memory for reuse instead of handing it back at once.

Rendering, G and SR allocate tensors of a few MiB per call. With glibc's defaults every block
above the mmap threshold is mapped fresh and unmapped when freed, so each call page-faults its
intermediates in again (millions of minor faults in one `animate`; ~20% of its time spent in the
kernel), and freed heap tops are trimmed back just as eagerly. ``keep_freed_memory`` sets the two
knobs the environment variable ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...``
would, from inside the process: large blocks come from the heap and stay there for the next call.
Peak RSS does not rise (a freed block is reused, not duplicated); memory is returned to the system
when the process ends.

Left alone when the user configured the allocator (``GLIBC_TUNABLES``, ``MALLOC_MMAP_MAX_``,
``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_`` or a preloaded allocator such as jemalloc),
when the C library is not glibc, and when ``EXPORT3D_MALLOC=system``.

``freed_memory_is_kept`` tells the renderer whether the setting is in force: with it, larger chunks of rays are
faster (their intermediates are reused from the heap instead of faulted in afresh; ``models/rendering/renderer.py``).
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt() parameters, <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD_BYTES = 1 << 30  # mallopt takes an int: 1 GiB, far above any free block of this program's

_kept = False  # set once keep_freed_memory() has applied the setting in this process

_USER_SETTINGS = (
    "GLIBC_TUNABLES",
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "LD_PRELOAD",
)


def keep_freed_memory() -> bool:
    """Apply the setting described above; True if it was applied."""
    if os.environ.get("EXPORT3D_MALLOC") == "system" or any(os.environ.get(name) for name in _USER_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # mallopt returns 1 on success.
    applied = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1
    global _kept
    _kept = _kept or applied
    return applied


def freed_memory_is_kept() -> bool:
    """True once ``keep_freed_memory`` has applied its setting in this process (a user's own allocator settings
    are not inspected: they count as not known to keep freed memory)."""
    return _kept
