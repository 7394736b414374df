"""keep_freed_memory: freed large blocks stay with the process (no munmap per tensor) unless the user opts out."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator only"
)

# Allocates and touches 64 MiB, frees it, and prints whether the setting applied and how much RSS stayed.
PROBE = """
import os
from export3d_cli.allocator import freed_memory_is_kept, keep_freed_memory
assert not freed_memory_is_kept()
applied = keep_freed_memory()
assert freed_memory_is_kept() == applied  # what the renderer's chunk size follows
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = rss()
block = bytearray(64 << 20)
for i in range(0, len(block), 4096):
    block[i] = 1
del block
print(applied, (rss() - before) / 2**20)
"""


def _probe(**environment: str) -> tuple[bool, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "EXPORT3D_MALLOC", "LD_PRELOAD")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env={**env, **environment}, capture_output=True, text=True, check=True
    )
    applied, kept = result.stdout.split()
    return applied == "True", float(kept)


def test_freed_large_blocks_stay_for_reuse():
    applied, kept_mib = _probe()
    assert applied
    assert kept_mib > 60  # the 64 MiB came from the heap and were not handed back


def test_glibc_defaults_hand_them_back_and_are_kept_when_asked_for():
    for environment in ({"EXPORT3D_MALLOC": "system"}, {"GLIBC_TUNABLES": "glibc.malloc.check=0"}):
        applied, kept_mib = _probe(**environment)
        assert not applied
        assert kept_mib < 8  # mapped for the block and unmapped when it was freed
