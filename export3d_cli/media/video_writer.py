"""Streaming H.264/MP4 encode through the ffmpeg binary that imageio-ffmpeg ships.

Why streaming: a rendered video can be minutes long, so frames are never accumulated. :class:`VideoWriter`
pipes each ``[H, W, 3]`` uint8 RGB frame to ffmpeg's stdin as it comes; a full pipe blocks :meth:`write` until
ffmpeg has caught up, which keeps memory at a few frames whatever the length. ffmpeg's stderr is drained by a
thread (the reader's :class:`StderrDrain`), so a chatty ffmpeg can never block on it while we block on stdin.

Why atomic: the output appears under its name only once it is complete. Frames are encoded into a temporary
file next to the target; :meth:`VideoWriter.close` moves the result into place through
:func:`~export3d_cli.atomic.atomic_path`. An exception in the caller, Ctrl-C (or SIGTERM, SIGHUP: see
:mod:`export3d_cli.signals`), a failing ffmpeg or a full disk kills ffmpeg and removes the temporary files; a file
already at the target stays as it was.

Why two steps for audio: the video is encoded first, then a second, short ffmpeg run copies the finished video
stream (``-c:v copy``, no re-encode) and adds the audio of ``audio_from`` as AAC. Keeping the audio out of the
streaming run means ffmpeg never has to interleave a file input with a pipe whose pace the caller sets, and the
video's length is known exactly (frames written / fps) when the audio is cut. The audio is cut with ``-t`` on
the audio input rather than ``-shortest``: ``-shortest`` would also cut the *video* when the driver's audio track
is shorter than it, losing rendered frames; ``-t`` only ever shortens the audio.

Odd sizes: yuv420p stores chroma per 2x2 block, so H.264 needs even dimensions. An odd width or height is padded
by one column or row on the right or bottom *in numpy*, repeating the edge pixels: unlike ffmpeg's ``pad``
filter (a solid colour) this leaves no dark line whose colour would bleed into the last real row through the
shared chroma. The decoded video has the even size.

Per-frame times: given ``frame_times`` (a variable-frame-rate driver's own timestamps), the frames go to ffmpeg
wrapped in a Matroska stream (:mod:`~export3d_cli.media.matroska_stream`), which carries a timestamp per frame,
and the encode keeps them (``-fps_mode passthrough``, the demuxer's 1 µs time base, a 90 kHz MP4 track). Each
frame is then shown at its driving frame's moment, not at k / average rate. The first frame starts the video, and
the audio is taken from the same moment of the driver (``-ss``), so a driver whose first frame is stamped late
keeps its sound in sync too. Without ``frame_times`` the raw frames are piped at a constant ``fps``.
"""

from __future__ import annotations

import contextlib
import math
import operator
import os
import subprocess
import tempfile
import weakref
from pathlib import Path
from types import TracebackType

import imageio_ffmpeg
import numpy as np

from export3d_cli.atomic import atomic_path, prepare_output_file, temp_prefix
from export3d_cli.errors import Export3DError
from export3d_cli.media.ffmpeg_process import (
    StderrDrain,
    exact_rate,
    ffmpeg_url,
    kill_process,
    rate_arg,
    summarise_errors,
)
from export3d_cli.media.matroska_stream import MatroskaFrameStream, increasing_at_stream_resolution
from export3d_cli.media.video_reader import probe_video
from export3d_cli.signals import interruptions_held

__all__ = ["X264_PRESETS", "VideoWriter", "has_audio_stream"]

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_AUDIO_BITRATE = "160k"

# ffmpeg has stopped reading frames when a write fails; it is exiting by then, this only guards against a hang.
_EXIT_TIMEOUT = 30.0


def has_audio_stream(path: str | os.PathLike[str]) -> bool:
    """Whether the video at ``path`` has an audio stream; :class:`InputError` for a file that is not a video."""
    return probe_video(path).has_audio


class VideoWriter:
    """Encode frames to an H.264 MP4: ``with VideoWriter(p, fps=25, width=w, height=h) as out: out.write(f)``.

    Frames are uint8 RGB ``[height, width, 3]``. Leaving the ``with`` block normally calls :meth:`close`, which
    finishes the encode, adds the audio of ``audio_from`` (if it has any; see :attr:`audio_source`) and moves
    the file into place. Leaving it by an exception (``KeyboardInterrupt`` included) kills ffmpeg and leaves
    nothing behind. An odd ``width``/``height`` is padded to the next even number (see the module docstring).

    Raises :class:`UsageError` when the output folder cannot be written (before ffmpeg starts),
    :class:`InputError` when ``audio_from`` is not a readable video, :class:`Export3DError` when ffmpeg fails
    (one line: the output path and ffmpeg's last error line), and ``ValueError`` for invalid arguments, a frame
    of the wrong shape or dtype, or a write after :meth:`close`.

    ``frame_times`` (seconds, finite, strictly increasing; at least one per frame written) shows frame k at
    ``frame_times[k] - frame_times[0]`` and takes the audio from ``frame_times[0]`` on; ``fps`` then only names
    the nominal rate (and the length of the last frame when no later time is known).

    ``quality_crf`` is x264's constant rate factor (lower is better; 18 looks lossless to most eyes). 0 is truly
    lossless but needs the High 4:4:4 Predictive profile, which browsers and phones do not play.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float,
        width: int,
        height: int,
        audio_from: str | os.PathLike[str] | None = None,
        quality_crf: int = 18,
        preset: str = "medium",
        frame_times: np.ndarray | None = None,
    ) -> None:
        width, height, quality_crf = operator.index(width), operator.index(height), operator.index(quality_crf)
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps}")
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        if not 0 <= quality_crf <= 51:
            raise ValueError(f"quality_crf must be in 0..51, got {quality_crf}")
        if preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}; got {preset!r}")
        self.frame_times = None if frame_times is None else _checked_times(frame_times)
        self.path = prepare_output_file(path)
        # The source is checked now, not after a long encode; a video without sound is simply not used.
        self.audio_source = Path(audio_from) if audio_from is not None and has_audio_stream(audio_from) else None
        self.fps = fps
        self.width = width
        self.height = height
        self.frames_written = 0
        self._shape = (height, width, 3)
        self._padding = ((0, height % 2), (0, width % 2), (0, 0)) if height % 2 or width % 2 else None
        self._rate = rate_arg(exact_rate(fps))  # 29.97 -> 30000/1001: the stream's rate is exact
        self._stream = None
        self._pending = b""  # bytes owed to ffmpeg before the next frame's pixels (the Matroska header first)
        if self.frame_times is not None:
            self._stream = MatroskaFrameStream(width=width + width % 2, height=height + height % 2)
            self._pending = self._stream.header()
        self._closed = False
        self._result: Path | None = None

        # From the temporary file's creation until the finaliser owns it, a Ctrl-C or SIGTERM would leave the file
        # behind with nobody to remove it: hold them until then (it takes milliseconds).
        with interruptions_held():
            fd, name = tempfile.mkstemp(prefix=temp_prefix(self.path), suffix=".video.tmp", dir=self.path.parent)
            os.close(fd)
            self._video_tmp = Path(name)
            cmd = _encode_command(
                self._video_tmp,
                width=width + width % 2,
                height=height + height % 2,
                rate=self._rate,
                crf=quality_crf,
                preset=preset,
                # Only the file that is moved into place needs its index up front; rewriting a temporary one is waste.
                faststart=self.audio_source is None,
                timed=self.frame_times is not None,
            )
            try:
                self._proc = subprocess.Popen(
                    cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
            except BaseException:
                self._video_tmp.unlink(missing_ok=True)
                raise
            self._stderr = StderrDrain(self._proc.stderr)
            self._stderr.start()
            # Kills ffmpeg and removes the temporary file even if the writer is dropped without close() or the
            # interpreter exits; the callback must not hold the writer.
            self._release = weakref.finalize(self, _discard, self._proc, self._stderr, self._video_tmp)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    def write(self, frame: np.ndarray) -> None:
        """Send one uint8 RGB ``[height, width, 3]`` frame to ffmpeg (blocks while ffmpeg catches up)."""
        if self._closed:
            raise ValueError(f"{self.path}: VideoWriter is closed")
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != self._shape:
            got = f"{frame.dtype} {list(frame.shape)}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise ValueError(f"frame must be uint8 {list(self._shape)} (the declared size), got {got}")
        if self.frame_times is not None and self.frames_written >= len(self.frame_times):
            given = len(self.frame_times)
            raise ValueError(f"{self.path}: frame {self.frames_written + 1} has no time ({given} given)")
        if self._padding is not None:
            frame = np.pad(frame, self._padding, mode="edge")
        if self._stream is not None:
            start, end = self._frame_span(self.frames_written)
            self._pending += self._stream.frame_header(start, end - start)
        try:
            try:
                if self._pending:
                    self._proc.stdin.write(self._pending)
                    self._pending = b""
                self._proc.stdin.write(np.ascontiguousarray(frame).data)
            except OSError:
                # A broken pipe: ffmpeg stopped reading, so it has failed; its stderr says why.
                raise self._failure(self._wait_after_pipe_error()) from None
        except BaseException:  # Ctrl-C while blocked on the pipe, too
            self._abort()
            raise
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the encode, add the audio, move the file into place and return its path; idempotent."""
        if self._result is not None:
            return self._result
        if self._closed:
            raise ValueError(f"{self.path}: VideoWriter was aborted; there is no output")
        if self.frames_written == 0:
            self._abort()
            raise ValueError(f"{self.path}: no frames were written; nothing to encode")
        self._closed = True
        try:
            try:
                self._proc.stdin.close()  # end of input: ffmpeg flushes its encoder and writes the index
            except OSError:
                returncode = self._wait_after_pipe_error()
            else:
                returncode = self._proc.wait()
            if returncode != 0:
                raise self._failure(returncode)
            with atomic_path(self.path) as tmp:
                if self.audio_source is None:
                    os.replace(self._video_tmp, tmp)
                else:
                    self._mux_audio(tmp)
        except BaseException:
            self._abort()
            raise
        self._release()
        self._result = self.path
        return self.path

    @property
    def duration(self) -> float:
        """Seconds the frames written so far last (the audio is cut to this)."""
        if self.frame_times is None:
            return self.frames_written / self.fps
        return self._frame_span(self.frames_written - 1)[1]

    def _frame_span(self, index: int) -> tuple[float, float]:
        """(start, end) of frame ``index`` in seconds from the first frame: it lasts until the next frame's time,
        the last one for 1 / fps."""
        times = self.frame_times
        start = float(times[index] - times[0])
        end = float(times[index + 1] - times[0]) if index + 1 < len(times) else start + 1.0 / self.fps
        return start, end

    def _mux_audio(self, output: Path) -> None:
        start = 0.0 if self.frame_times is None else max(0.0, float(self.frame_times[0]))
        cmd = _mux_command(self._video_tmp, self.audio_source, output, duration=self.duration, audio_start=start)
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode != 0:
            lines = done.stderr.decode("utf-8", "replace").splitlines()
            reason = summarise_errors(lines, limit=1) or f"ffmpeg exit code {done.returncode}"
            raise Export3DError(f"{self.path}: adding the audio of {self.audio_source} failed: {reason}")

    def _wait_after_pipe_error(self) -> int:
        try:
            return self._proc.wait(timeout=_EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._abort()
            raise Export3DError(f"{self.path}: ffmpeg stopped reading frames but did not exit") from None

    def _failure(self, returncode: int) -> Export3DError:
        """The one-line error for a finished, failed encode; everything the encode left is removed first."""
        self._stderr.join()  # ffmpeg has exited, so its stderr is at EOF
        reason = summarise_errors(self._stderr.lines, limit=1) or f"ffmpeg exit code {returncode}"
        self._abort()
        return Export3DError(f"{self.path}: video encoding failed: {reason}")

    def _abort(self) -> None:
        self._closed = True
        self._release()


def _discard(proc: subprocess.Popen[bytes], stderr: StderrDrain, video_tmp: Path) -> None:
    # Runs once (weakref.finalize): a second Ctrl-C or SIGTERM arriving now must wait, or ffmpeg and its
    # temporary file would outlive the process.
    with interruptions_held():
        kill_process(proc)
        # Closing stdin flushes what is still buffered into a pipe nobody reads: that error is expected.
        with contextlib.suppress(OSError):
            proc.stdin.close()
        stderr.join()
        proc.stderr.close()
        video_tmp.unlink(missing_ok=True)


def _checked_times(frame_times: np.ndarray) -> np.ndarray:
    times = np.asarray(frame_times, dtype=np.float64)
    if times.ndim != 1 or times.size == 0:
        raise ValueError(f"frame_times must be a non-empty 1-D array, got shape {list(times.shape)}")
    if not np.isfinite(times).all():
        raise ValueError("frame_times must be finite")
    if not increasing_at_stream_resolution(times):
        raise ValueError("frame_times must strictly increase (by 1 µs at least)")
    return times


# A variable-rate encode keeps the demuxer's 1 µs stamps through the encoder and stores them on the usual 90 kHz
# MP4 clock (11 µs resolution), where libx264 would otherwise re-time frames to a guessed constant rate. No
# B-frames: with reordering, MP4's decode-time deltas of an irregular sequence no longer add up to its
# presentation span (a 1.04 s test clip got a 0.72 s track duration, which players may stop at).
_TIMED_INPUT = ["-f", "matroska"]
_TIMED_OUTPUT = ["-fps_mode", "passthrough", "-enc_time_base", "demux", "-video_track_timescale", "90000", "-bf", "0"]


def _encode_command(
    output: Path, *, width: int, height: int, rate: str, crf: int, preset: str, faststart: bool, timed: bool = False
) -> list[str]:
    """The ffmpeg command that encodes rgb24 frames from stdin into an MP4: raw frames at ``rate``, or with
    ``timed`` a Matroska stream whose frames carry their own times (a seam for the tests)."""
    raw_input = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size", f"{width}x{height}", "-framerate", rate]
    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",  # the temporary file exists already (mkstemp reserved its name)
        *(_TIMED_INPUT if timed else raw_input),
        "-i",
        "pipe:0",
        *(_TIMED_OUTPUT if timed else []),
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        # Say which matrix converted RGB to YUV: the BT.601 one swscale uses by default (and which newer ffmpegs
        # then use because it is tagged). Untagged, players guess, and many guess BT.709 for HD sizes: a hue shift.
        "-colorspace",
        "smpte170m",
        "-color_range",
        "tv",
        *(["-movflags", "+faststart"] if faststart else []),
        "-f",
        "mp4",  # the temporary name ends in .tmp, so the container cannot be guessed from it
        ffmpeg_url(output),
    ]


def _mux_command(video: Path, audio: Path, output: Path, *, duration: float, audio_start: float = 0.0) -> list[str]:
    """The ffmpeg command that copies ``video``'s stream and adds ``audio``'s first audio stream from
    ``audio_start`` seconds on, cut to ``duration`` seconds, as AAC (a seam for the tests)."""
    return [
        imageio_ffmpeg.get_ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        "-i",
        ffmpeg_url(video),
        *(["-ss", f"{audio_start:.6f}"] if audio_start > 0 else []),
        "-t",
        f"{duration:.6f}",
        "-i",
        ffmpeg_url(audio),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c:v",
        "copy",
        "-c:a",
        "aac",
        "-b:a",
        _AUDIO_BITRATE,
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
        ffmpeg_url(output),
    ]
