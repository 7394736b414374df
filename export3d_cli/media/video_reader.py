"""Streaming video decode through the ffmpeg binary that imageio-ffmpeg ships.

Driving videos can be minutes long, so frames are never accumulated: ffmpeg decodes to raw ``rgb24`` on a
pipe and :class:`VideoReader` hands out one ``[H, W, 3]`` uint8 frame at a time. Memory stays at a few frames
whatever the length of the video.

Why a subprocess and not a Python binding: the static ffmpeg from imageio-ffmpeg is already a dependency, decodes
every codec a phone produces, and applies rotation metadata (autorotate) itself. There is no ffprobe next to
it, so :func:`probe_video` reads the header ffmpeg prints on stderr, and takes the frame size from the *output*
stream of a one-frame trial decode: that is the size after autorotate, i.e. exactly what the pipe will carry,
with no need to interpret display matrices ourselves.

Why the threads: a blocking read on a pipe cannot time out portably, and a full stderr pipe would block ffmpeg
forever. One thread reads frames into a small bounded queue (so the caller can wait with a timeout: the stall
watchdog), another drains stderr into a bounded buffer (kept for the error message).

Frames larger than :data:`MAX_FRAME_PIXELS` are refused from the header, before ffmpeg decodes one: each
frame crosses the pipe whole and a few are in flight at once, so a small file of huge frames would otherwise
cost gigabytes. ffmpeg is also told the limit (``-max_pixels``), so its decoder refuses such frames rather than
allocating them, wherever in the stream they appear.

Every decoded frame comes out exactly once (``-fps_mode passthrough``): "one output frame per driving frame"
must hold for a variable-frame-rate phone video and for one whose first frame is stamped late, where resampling
to a constant rate repeated or dropped frames. ``info.fps`` is the stream's rate; for a variable-rate stream
(detected from the packets' timestamps, read without decoding) it is the average rate over the stream, so a
video written at ``info.fps`` lasts as long as the input and its audio stays in sync at both ends. For such a
stream ``info.frame_times`` also holds every frame's own presentation time (the packets' times, sorted: the order
the decoder hands frames out), which motion files keep and the video writer reproduces frame by frame.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import struct
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import imageio_ffmpeg
import numpy as np

from export3d_cli.errors import InputError
from export3d_cli.input_files import require_regular_file
from export3d_cli.media.ffmpeg_process import (
    StderrDrain,
    exact_rate,
    ffmpeg_url,
    kill_process,
    summarise_errors,
)

__all__ = ["DEFAULT_FPS", "MAX_FRAME_PIXELS", "VideoInfo", "VideoReader", "probe_video", "read_video_frames"]

DEFAULT_FPS = 25.0
# 40 MP: above 8K video (7680 x 4320 = 33.2 MP, DCI 8K 8192 x 4320 = 35.4 MP), the largest any camera records.
# An rgb24 frame at the limit is 120 MB and the reader holds at most four (queue, pump, caller), under 0.5 GB
# (`extract` on a 40 MP frame peaks at 0.4 GB); an 840 KB MKV of 16000 x 16000 frames took 3.7 GB.
MAX_FRAME_PIXELS = 40_000_000

# Reading the header and one frame is bounded work; its timeout only guards against a hung file system.
_PROBE_TIMEOUT = 30.0

# ffmpeg's demuxers for still images: they open a PNG or JPEG as a one-frame "video", which is never what a
# user meant by a driving video.
_IMAGE_DEMUXERS = frozenset({"image2", "image2pipe", "tty"})

# A video ending more than this many frames short of the frame count the video itself promises counts as
# truncated; the slack absorbs rounding of duration * fps. When the count comes from a container duration that may
# cover a longer audio track, the shortfall must also exceed the fraction and ffmpeg must have complained.
_SHORTFALL_MIN_FRAMES = 2
_SHORTFALL_FRACTION = 0.05

# An AVI's header chunks (hdrl) sit in its first few KB; ffmpeg reserves ~8 KB of padding there for OpenDML.
_AVI_HEADER_BYTES = 65_536

# Decoded frames waiting for the caller; bounds memory to a few frames while letting ffmpeg run ahead a little.
_QUEUE_FRAMES = 2

_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio|Subtitle|Data|Attachment): ")
_SIZE = re.compile(r", (\d+)x(\d+)\b")
_RATE = re.compile(r"\b(\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM_DURATION = re.compile(r"^\s*DURATION(?:-\w+)?\s*: (\d+):(\d+):(\d+(?:\.\d+)?)")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees|^\s*rotate\s*: (-?\d+)")
# What ffmpeg says when -max_pixels stops a decoder before the stream line got a size (e.g. MJPEG).
_PIXEL_LIMIT_HIT = re.compile(r"Picture size (\d+)x(\d+) exceeds specified max pixel count")


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` learnt about a video.

    ``width``/``height`` are those of the decoded frames, after ffmpeg's autorotate. ``frame_count`` is an
    estimate (duration * fps, or an AVI header's frame count) and ``None`` when the container gives no duration.
    ``frame_count_from_video`` is True when that count is the video stream's own (an AVI header, the stream's
    duration tag, or a file without audio) rather than a container duration that may cover a longer audio track.
    ``warnings`` lists guesses made along the way (e.g. the 25 fps fallback), one line each, for the caller to show.
    ``frame_times`` [frame_count] float64 seconds, for a variable-frame-rate stream only (None otherwise): frame
    k's presentation time on the file's clock, where a constant-rate stream's frame k is simply at k / fps.
    """

    path: Path
    fps: float
    width: int
    height: int
    frame_count: int | None
    duration: float | None
    has_audio: bool
    warnings: tuple[str, ...]
    frame_count_from_video: bool = True
    frame_times: np.ndarray | None = dataclasses.field(default=None, compare=False, repr=False)


def probe_video(path: str | os.PathLike[str], *, timeout: float = _PROBE_TIMEOUT) -> VideoInfo:
    """Read a video's header and decode its first frame.

    Raises :class:`InputError` (one line, starting with the path) for a missing, unreadable, empty or
    non-video file, a file without a video stream, frames above :data:`MAX_FRAME_PIXELS`, a video whose frames
    do not decode, or when ffmpeg takes longer than ``timeout`` seconds.
    """
    path = Path(path)
    require_regular_file(path)
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-max_pixels",
        str(MAX_FRAME_PIXELS),
        "-i",
        ffmpeg_url(path),
        "-map",
        "0:V:0",
        "-frames:v",
        "1",
        "-f",
        "null",
        "-",
    ]
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        raise InputError(f"{path}: ffmpeg could not read the video header within {timeout:g} s") from None
    info = _parse_probe(path, done.stderr.decode("utf-8", "replace"), done.returncode)
    timing = _packet_timing(path, timeout)
    if timing is not None and timing.variable:
        # The header's rate is a guess for a variable-rate stream; the decode yields exactly one frame per packet,
        # so the average rate over the stream's own timestamps is what keeps the output as long as the input
        # (and its audio in sync at both ends).
        fps = timing.frames / timing.duration
        note = (
            f"{path}: variable frame rate ({timing.frames} frames over {timing.duration:.2f} s); "
            f"each frame is kept at its own time (average {fps:.3f} fps)"
        )
        info = dataclasses.replace(
            info,
            fps=fps,
            frame_count=timing.frames,
            frame_count_from_video=True,
            warnings=(*info.warnings, note),
            frame_times=timing.times,
        )
    promised = _avi_frame_count(path)
    # ffmpeg scales its duration for a cut AVI down to the bytes present, so a cut file would seem complete.
    if promised is not None and (info.frame_count is None or promised > info.frame_count):
        info = dataclasses.replace(info, frame_count=promised, frame_count_from_video=True)
    return info


@dataclass(frozen=True)
class PacketTiming:
    """The video stream's packets as the demuxer stamps them: count, span in seconds, whether the intervals
    between consecutive presentation times differ (a variable frame rate), and the times [frames] in seconds,
    sorted (presentation order)."""

    frames: int
    duration: float
    variable: bool
    times: np.ndarray = dataclasses.field(compare=False, repr=False)


# Intervals differing by more than this fraction of the median count as a variable frame rate (timestamps are
# rounded to the container's time base, e.g. 1 ms in Matroska: 40 ms vs 41 ms is not variable).
_VARIABLE_RATE_TOLERANCE = 0.1


def _packet_timing(path: Path, timeout: float) -> PacketTiming | None:
    """Read every video packet's timestamps without decoding (``-c copy`` into ``framecrc``); None if unavailable."""
    cmd = [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        ffmpeg_url(path),
        "-map",
        "0:V:0",
        "-c",
        "copy",
        "-f",
        "framecrc",
        "-",
    ]
    try:
        done = subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None
    return parse_packet_timing(done.stdout.decode("ascii", "replace"))


def parse_packet_timing(text: str) -> PacketTiming | None:
    """``framecrc`` output -> PacketTiming (lines ``#tb 0: 1/1000`` and ``0, dts, pts, duration, size, crc``)."""
    time_base = None
    stamps: list[tuple[int, int]] = []
    for line in text.splitlines():
        if line.startswith("#tb 0:"):
            numerator, _, denominator = line.split(":", 1)[1].strip().partition("/")
            time_base = int(numerator) / int(denominator)
        elif line and not line.startswith("#"):
            fields = [field.strip() for field in line.split(",")]
            if len(fields) >= 4 and fields[0] == "0":
                stamps.append((int(fields[2]), int(fields[3])))
    if time_base is None or len(stamps) < 2:
        return None
    stamps.sort()
    starts = np.array([pts for pts, _ in stamps], dtype=np.float64)
    span = (starts[-1] - starts[0] + max(stamps[-1][1], 0)) * time_base
    intervals = np.diff(starts)
    median = float(np.median(intervals))
    if span <= 0 or median <= 0:
        return None
    variable = bool(np.abs(intervals - median).max() > _VARIABLE_RATE_TOLERANCE * median)
    if stamps[-1][1] <= 0:  # no duration on the last packet: assume the typical interval
        span += median * time_base
    return PacketTiming(frames=len(stamps), duration=span, variable=variable, times=starts * time_base)


class VideoReader:
    """Decode a video one frame at a time: ``with VideoReader(p) as r: for frame in r: ...``.

    Frames are uint8 RGB ``[H, W, 3]`` with ``H, W = info.height, info.width``, each a fresh writable array.
    The reader is a single-pass iterator. A file that is corrupt or truncated part-way yields every frame
    that decodes, then stops with :attr:`error` set; one that yields no frame at all raises
    :class:`InputError`. If ffmpeg sends no frame data for ``stall_timeout`` seconds it is killed and
    iteration stops with :attr:`error` set. :meth:`close` (also on leaving the ``with`` block) kills ffmpeg.
    """

    def __init__(self, path: str | os.PathLike[str], *, stall_timeout: float = 30.0) -> None:
        if not stall_timeout > 0:
            raise ValueError(f"stall_timeout must be positive, got {stall_timeout}")
        self.info = probe_video(path, timeout=max(stall_timeout, _PROBE_TIMEOUT))
        self.frames_read = 0
        self.error: str | None = None
        self._stall_timeout = stall_timeout
        self._shape = (self.info.height, self.info.width, 3)
        self._closed = False
        self._ended = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._pump: _FramePump | None = None
        self._stderr: StderrDrain | None = None
        self._kill: weakref.finalize | None = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        return self

    def __next__(self) -> np.ndarray:
        if self._proc is None:
            if self._closed:
                raise ValueError(f"{self.info.path}: VideoReader is closed")
            self._start()
        if self._ended or self._closed:
            raise StopIteration
        try:
            buffer = self._next_buffer()
        except BaseException:
            self.close()  # e.g. KeyboardInterrupt while waiting: ffmpeg must not outlive the reader
            raise
        if buffer is None:
            self._ended = True
            self.close()
            if self.frames_read == 0:
                raise InputError(
                    f"{self.info.path}: no decodable video frames ({self.error or 'ffmpeg produced no output'})"
                )
            raise StopIteration
        self.frames_read += 1
        return np.frombuffer(buffer, dtype=np.uint8).reshape(self._shape)

    def close(self) -> None:
        """Kill ffmpeg if it is still running and release the pipes; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._proc is None:
            return
        self._pump.stop.set()
        self._kill()  # the pipes reach EOF once ffmpeg is gone, which ends both threads
        self._pump.join()
        self._stderr.join()
        self._proc.stdout.close()
        self._proc.stderr.close()

    def _start(self) -> None:
        cmd = _decode_command(self.info.path)
        self._proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        # Kills ffmpeg even if the reader is dropped without close(); the callback must not hold the reader.
        self._kill = weakref.finalize(self, kill_process, self._proc)
        self._stderr = StderrDrain(self._proc.stderr)
        self._pump = _FramePump(self._proc.stdout, self._shape[0] * self._shape[1] * 3)
        self._stderr.start()
        self._pump.start()

    def _next_buffer(self) -> bytearray | None:
        """The next frame's bytes, or ``None`` at the end of the stream (with :attr:`error` set if it ended badly)."""
        pump = self._pump
        waiting_since = time.monotonic()
        while True:
            # A caller that was busy must not count as a stall: measure from the later of our own wait and
            # ffmpeg's last sign of progress.
            remaining = max(waiting_since, pump.last_progress) + self._stall_timeout - time.monotonic()
            if remaining <= 0:
                self._kill()
                self.error = f"ffmpeg sent no frame data for {self._stall_timeout:g} s; decoding stopped"
                return None
            try:
                kind, payload = pump.frames.get(timeout=remaining)
            except queue.Empty:
                continue
            if kind == "frame":
                return payload
            self._finish(partial_bytes=payload)
            return None

    def _finish(self, partial_bytes: int) -> None:
        """Record why the stream ended, once ffmpeg has closed its output."""
        proc = self._proc
        try:
            proc.wait(timeout=self._stall_timeout)
        except subprocess.TimeoutExpired:
            self._kill()
        self._stderr.join()
        reason = summarise_errors(self._stderr.lines, limit=1)
        problems = []
        if proc.returncode != 0:
            problems.append(f"ffmpeg failed (exit code {proc.returncode})")
        if partial_bytes:
            problems.append(f"last frame truncated ({partial_bytes} of {self.info.width * self.info.height * 3} bytes)")
        expected = self.info.frame_count or 0
        shortfall = expected - self.frames_read
        if self.info.frame_count_from_video:
            # The video promised these frames: a cut AVI or MKV can end cleanly at its last whole frame, without
            # a word from ffmpeg, so the count alone must tell.
            truncated = shortfall > _SHORTFALL_MIN_FRAMES
        else:
            # The container duration may cover a longer audio track: only a shortfall ffmpeg complained about.
            truncated = bool(reason) and shortfall > max(_SHORTFALL_MIN_FRAMES, _SHORTFALL_FRACTION * expected)
        if truncated:
            problems.append(f"stream ended after {self.frames_read} of ~{expected} frames")
        if problems:
            self.error = "; ".join(problems) + (f": {reason}" if reason else "")


def read_video_frames(path: str | os.PathLike[str], *, stall_timeout: float = 30.0) -> Iterator[np.ndarray]:
    """Yield a video's frames (uint8 RGB ``[H, W, 3]``) one at a time; see :class:`VideoReader`.

    The file is probed on the first ``next()``, so input errors surface there. Closing the generator (or
    dropping it) kills ffmpeg.
    """
    with VideoReader(path, stall_timeout=stall_timeout) as reader:
        yield from reader


class _FramePump(threading.Thread):
    """Reads whole frames off ffmpeg's stdout into a bounded queue.

    Queue items: ``("frame", bytearray)`` or, once, ``("end", n)`` where ``n`` is the byte count of an
    incomplete last frame (0 on a clean end).
    """

    def __init__(self, stdout: IO[bytes], frame_bytes: int) -> None:
        super().__init__(name="ffmpeg-frames", daemon=True)
        self._stdout = stdout
        self._frame_bytes = frame_bytes
        self.frames: queue.Queue[tuple[str, bytearray | int]] = queue.Queue(maxsize=_QUEUE_FRAMES)
        self.stop = threading.Event()
        self.last_progress = time.monotonic()

    def run(self) -> None:
        partial = 0
        try:
            while not self.stop.is_set():
                buffer, got = self._read_frame()
                if got < self._frame_bytes:
                    partial = got
                    break
                self._put(("frame", buffer))
        except (OSError, ValueError):
            pass  # the pipe was closed under us by close(); nobody is waiting for the end marker then
        self._put(("end", partial))

    def _read_frame(self) -> tuple[bytearray, int]:
        """One frame's bytes and how many arrived (fewer than a frame only at the end of the stream)."""
        buffer = bytearray(self._frame_bytes)
        got = 0
        with memoryview(buffer) as view:
            while got < self._frame_bytes:
                n = self._stdout.readinto(view[got:])
                if not n:
                    break
                got += n
                self.last_progress = time.monotonic()
        return buffer, got

    def _put(self, item: tuple[str, bytearray | int]) -> None:
        # Poll the stop flag so a caller that stopped reading never leaves this thread blocked on a full queue.
        while not self.stop.is_set():
            try:
                self.frames.put(item, timeout=0.1)
            except queue.Full:
                continue
            # Waiting for room in the queue is the caller's doing, not a stall of ffmpeg.
            self.last_progress = time.monotonic()
            return


def _decode_command(path: Path) -> list[str]:
    """The ffmpeg command that writes the video's frames as raw rgb24 to stdout (a seam for the tests)."""
    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-max_pixels",
        str(MAX_FRAME_PIXELS),
        "-i",
        ffmpeg_url(path),
        "-map",
        "0:V:0",
        # One output frame per decoded frame: resampling to a constant rate would repeat or drop frames of a
        # variable-frame-rate video (171 rows for 169 frames) and of one whose first frame is stamped late.
        "-fps_mode",
        "passthrough",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-",
    ]


def _parse_probe(path: Path, text: str, returncode: int) -> VideoInfo:
    """Build a :class:`VideoInfo` from the stderr of the probe command in :func:`probe_video`."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Input #0, ")), None)
    if start is None:
        raise InputError(f"{path}: not a video ({summarise_errors(lines, limit=2) or 'ffmpeg cannot open it'})")
    demuxer = re.match(r"Input #0, (.*?), from ", lines[start])
    demuxer_name = demuxer.group(1) if demuxer else ""
    if demuxer_name in _IMAGE_DEMUXERS or demuxer_name.endswith("_pipe"):
        kind = demuxer_name.removesuffix("_pipe") + " image" if demuxer_name.endswith("_pipe") else "image file"
        raise InputError(f"{path}: not a video ({kind})")
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].startswith(("Output #", "Stream mapping:"))), len(lines)
    )
    header = lines[start:end]
    output = lines[end:]

    streams = [(i, m.group(1)) for i, line in enumerate(header) if (m := _STREAM.match(line))]
    videos = [i for i, kind in streams if kind == "Video" and "(attached pic)" not in header[i]]
    if not videos:
        raise InputError(f"{path}: has no video stream")
    video = videos[0]
    next_stream = next((i for i, _ in streams if i > video), len(header))
    stream_line, stream_block = header[video], header[video + 1 : next_stream]
    _check_frame_size(path, stream_line, lines)

    warnings: list[str] = []
    fps = _stream_rate(stream_line)
    if fps is None:
        fps = DEFAULT_FPS
        warnings.append(f"{path}: the video stream has no usable frame rate; assuming {DEFAULT_FPS:g} fps")

    stream_duration = _first_duration(_STREAM_DURATION, stream_block)
    duration = stream_duration or _first_duration(_DURATION, header)
    frame_count = round(duration * fps) if duration else None
    has_audio = any(kind == "Audio" for _, kind in streams)

    decoded = next(
        (m for line in output if _STREAM.match(line) and " Video: " in line and (m := _SIZE.search(line))), None
    )
    if decoded is not None:
        width, height = int(decoded.group(1)), int(decoded.group(2))
    elif returncode != 0:
        reason = summarise_errors(lines, limit=2) or f"ffmpeg exit code {returncode}"
        raise InputError(f"{path}: no decodable video frames ({reason})")
    else:
        # An ffmpeg that decoded a frame but printed no output stream we can parse: fall back to the coded
        # size, turned by the rotation metadata the way autorotate turns the frames.
        coded = _SIZE.search(stream_line)
        if coded is None:
            raise InputError(f"{path}: cannot determine the video frame size from ffmpeg's output")
        width, height = int(coded.group(1)), int(coded.group(2))
        if round(_rotation(stream_block) / 90) % 2:
            width, height = height, width

    return VideoInfo(
        path=path,
        fps=fps,
        width=width,
        height=height,
        frame_count=frame_count,
        duration=duration,
        has_audio=has_audio,
        warnings=tuple(warnings),
        frame_count_from_video=stream_duration is not None or not has_audio,
    )


def _check_frame_size(path: Path, stream_line: str, lines: list[str]) -> None:
    """Refuse frames above MAX_FRAME_PIXELS, from the header's coded size (or, when the stream line has none
    because -max_pixels stopped the decoder that would have found it, from ffmpeg's own complaint)."""
    size = _SIZE.search(stream_line) or next((m for line in lines if (m := _PIXEL_LIMIT_HIT.search(line))), None)
    if size is None:
        return
    width, height = int(size.group(1)), int(size.group(2))
    if width * height > MAX_FRAME_PIXELS:
        raise InputError(
            f"{path}: video frames are too large ({width}x{height} = {width * height / 1e6:.1f} megapixels; "
            f"the limit is {MAX_FRAME_PIXELS / 1e6:.1f} megapixels)"
        )


def _avi_frame_count(path: Path) -> int | None:
    """The frame count an AVI's header gives its first video stream (``strh`` dwLength); None for other files.

    Walks the RIFF chunks of the header list (``hdrl``) and its stream lists (``strl``) only.
    """
    with path.open("rb") as file:
        head = file.read(_AVI_HEADER_BYTES)
    if head[:4] != b"RIFF" or head[8:12] != b"AVI ":
        return None
    position = 12
    while position + 12 <= len(head):
        kind, size = head[position : position + 4], struct.unpack_from("<I", head, position + 4)[0]
        if kind == b"LIST" and head[position + 8 : position + 12] in (b"hdrl", b"strl"):
            position += 12  # into the list
            continue
        if kind == b"LIST" and head[position + 8 : position + 12] == b"movi":
            return None  # the frames start: there was no video stream header
        if kind == b"strh" and head[position + 8 : position + 12] == b"vids" and position + 44 <= len(head):
            length = struct.unpack_from("<I", head, position + 8 + 32)[0]  # after type, handler, flags, ..., start
            return length or None
        position += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def _stream_rate(stream_line: str) -> float | None:
    """The average frame rate ("fps"), else ffmpeg's guess ("tbr"); ``None`` when neither is plausible."""
    rates = {unit: (float(value), kilo) for value, kilo, unit in _RATE.findall(stream_line)}
    for unit in ("fps", "tbr"):
        if unit in rates:
            value, kilo = rates[unit]
            # "1k tbr" and the like are time bases, not frame rates.
            if not kilo and 0 < value < 1000:
                return exact_rate(value)
    return None


def _first_duration(pattern: re.Pattern[str], lines: list[str]) -> float | None:
    for line in lines:
        if m := pattern.search(line):
            return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    return None


def _rotation(stream_block: list[str]) -> float:
    for line in stream_block:
        if m := _ROTATION.search(line):
            return float(m.group(1) or m.group(2))
    return 0.0
