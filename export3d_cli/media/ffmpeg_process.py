"""Running ffmpeg as a child process: shared by the video reader and the video writer.

A drained stderr (a full pipe would block ffmpeg), reaping on kill (no zombies), ``file:`` URLs (names like
``-x.mp4`` are not options), exact NTSC rates, and the one error line worth showing a user.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections import deque
from fractions import Fraction
from pathlib import Path
from typing import IO

_STDERR_LINES = 64

# Lines ffmpeg prints as consequences of an earlier error; the earlier line is the one worth showing.
_NOISE = re.compile(
    r"Task finished with error code|Terminating thread with return code|Conversion failed|"
    r"Nothing was written into output file|Could not open encoder before EOF|Decode error rate|"
    r"misdetection possible|Cannot determine format of input|"
    r"^Error opening input files?\b|^Error opening output files?\b|^frame="
)
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)+")


class StderrDrain(threading.Thread):
    """Keeps ffmpeg's stderr flowing (a full pipe would block it) and remembers its last lines."""

    def __init__(self, stderr: IO[bytes]) -> None:
        super().__init__(name="ffmpeg-stderr", daemon=True)
        self._stderr = stderr
        self.lines: deque[str] = deque(maxlen=_STDERR_LINES)

    def run(self) -> None:
        pending = b""
        try:
            while chunk := self._stderr.read(65536):
                *complete, pending = (pending + chunk).split(b"\n")
                pending = pending[-4096:]  # a line without end must not grow without bound
                self.lines.extend(line.decode("utf-8", "replace").rstrip() for line in complete)
        except (OSError, ValueError):
            return
        if pending:
            self.lines.append(pending.decode("utf-8", "replace").rstrip())


def kill_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()  # reaps it: no zombie


def ffmpeg_url(path: Path) -> str:
    # The file: protocol keeps names like "-x.mp4" or "a:b.mp4" from being read as options or protocols.
    return "file:" + os.path.abspath(path)


def exact_rate(printed: float) -> float:
    """Undo ffmpeg's two-decimal rounding for NTSC rates: "29.97" is 30000/1001, "23.98" is 24000/1001."""
    ntsc = round(printed * 1.001)
    # Printing to two decimals is off by at most 0.005, so a phone's measured 29.98 average stays 29.98.
    if printed != int(printed) and abs(printed * 1.001 - ntsc) < 0.006:
        return ntsc * 1000 / 1001
    return printed


def rate_arg(fps: float) -> str:
    rate = Fraction(fps).limit_denominator(1001)
    return f"{rate.numerator}/{rate.denominator}"


def summarise_errors(lines: list[str] | deque[str], *, limit: int) -> str:
    """The last ``limit`` distinct informative error lines of ffmpeg's stderr, joined into one line.

    Header lines (indented) and ffmpeg's follow-up noise are skipped; ``[h264 @ 0x...]`` prefixes go.
    """
    found: list[str] = []
    for raw in lines:
        if not raw or raw[0].isspace() or raw.startswith(("Input #", "Output #", "Stream mapping:")):
            continue
        line = _LOG_PREFIX.sub("", raw).strip().removeprefix("Error opening input: ").rstrip(".")
        if line and not _NOISE.search(line):
            if line in found:
                found.remove(line)
            found.append(line)
    return "; ".join(found[-limit:])
