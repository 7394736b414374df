"""Tests for streaming video encode (export3d_cli.media.video_writer).

Videos are tiny (64x48) so each encode takes a fraction of a second; output is read back with the project's own
:class:`VideoReader`. Every test runs under an alarm so a hang (e.g. a pipe deadlock) fails instead of blocking
the suite. "No temporary files" is checked by listing the output folder, where all of them would be.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from export3d_cli.errors import Export3DError, InputError, UsageError
from export3d_cli.media import video_writer
from export3d_cli.media.video_reader import VideoReader, probe_video
from export3d_cli.media.video_writer import VideoWriter, has_audio_stream

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
WIDTH, HEIGHT = 64, 48


@pytest.fixture(autouse=True)
def _deadline():
    """Fail a test that runs over 60 s (pytest-timeout is not installed)."""

    def expire(signum, frame):
        raise TimeoutError("test exceeded its 60 s deadline")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def solid_colours(count: int) -> np.ndarray:
    """[count, 3] uint8 colours, far enough apart that a lossy encode cannot confuse them."""
    return np.random.default_rng(0).integers(16, 240, (count, 3)).astype(np.uint8)


def solid_frame(colour: np.ndarray, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    return np.broadcast_to(colour, (height, width, 3))


def write_solid_video(path: Path, count: int, **options) -> VideoWriter:
    options = {"fps": 25.0, "width": WIDTH, "height": HEIGHT, **options}
    with VideoWriter(path, **options) as writer:
        for colour in solid_colours(count):
            writer.write(solid_frame(colour, options["width"], options["height"]))
    return writer


def read_frames(path: Path) -> tuple[VideoReader, list[np.ndarray]]:
    with VideoReader(path) as reader:
        frames = list(reader)
    return reader, frames


def make_driver(path: Path, *, frames: int, audio_seconds: float | None) -> Path:
    """A 64x48, 25 fps H.264 driver video of ``frames`` frames, with a sine audio track of ``audio_seconds``."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc=size={WIDTH}x{HEIGHT}:rate=25:duration={frames / 25}"]
    if audio_seconds is not None:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={audio_seconds}", "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


@pytest.fixture(scope="module")
def driver_with_audio(tmp_path_factory) -> Path:
    """50 frames (2 s) with 2 s of sine audio."""
    return make_driver(tmp_path_factory.mktemp("driver") / "driver.mp4", frames=50, audio_seconds=2)


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def patch_encoder(monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    """Replace one argument of the real encode command."""
    real = video_writer._encode_command
    monkeypatch.setattr(
        video_writer, "_encode_command", lambda *a, **k: [new if arg == old else arg for arg in real(*a, **k)]
    )


# --- encoding ----------------------------------------------------------------------------------------------------


def test_round_trip_keeps_frames_colours_rate_and_size(tmp_path):
    path = tmp_path / "out.mp4"
    writer = write_solid_video(path, 30)
    assert writer.frames_written == 30
    assert writer.close() == path  # idempotent once done
    assert listing(tmp_path) == ["out.mp4"]
    reader, frames = read_frames(path)
    assert (reader.info.fps, reader.info.width, reader.info.height) == (25.0, WIDTH, HEIGHT)
    assert not reader.info.has_audio
    assert len(frames) == 30
    for index, (frame, colour) in enumerate(zip(frames, solid_colours(30), strict=True)):
        error = np.abs(frame.astype(int) - colour).max()
        assert error <= 6, f"frame {index}: off by {error}"


def test_file_is_mp4_h264_yuv420p_with_index_first(tmp_path):
    path = tmp_path / "out.mp4"
    write_solid_video(path, 5)
    header = subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    assert "Input #0, mov,mp4" in header
    assert "Video: h264" in header
    assert "yuv420p(tv, smpte170m" in header
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: playable while downloading
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_ntsc_rate_is_exact(tmp_path):
    path = tmp_path / "ntsc.mp4"
    write_solid_video(path, 30, fps=29.97)
    reader, frames = read_frames(path)
    assert reader.info.fps == pytest.approx(30000 / 1001, rel=1e-9)
    assert len(frames) == 30


def test_odd_size_is_padded_to_even_by_repeating_the_edge(tmp_path):
    # Black with a white last column and row: edge repetition pads white, a solid pad colour would not.
    frame = np.zeros((47, 63, 3), np.uint8)
    frame[:, -1] = 255
    frame[-1, :] = 255
    path = tmp_path / "odd.mp4"
    with VideoWriter(path, fps=25, width=63, height=47) as writer:
        for _ in range(3):
            writer.write(frame)
    reader, frames = read_frames(path)
    assert (reader.info.width, reader.info.height) == (64, 48)
    assert len(frames) == 3
    assert frames[0][:-2, -2:].min() > 200
    assert frames[0][-2:, :-2].min() > 200
    assert frames[0][:-4, :-4].max() < 40


def test_non_contiguous_frames_are_accepted(tmp_path):
    path = tmp_path / "view.mp4"
    wide = np.zeros((HEIGHT, WIDTH * 2, 3), np.uint8)
    wide[:, ::2] = (200, 40, 90)
    with VideoWriter(path, fps=25, width=WIDTH, height=HEIGHT) as writer:
        writer.write(wide[:, ::2])
    _, frames = read_frames(path)
    assert np.abs(frames[0].astype(int) - (200, 40, 90)).max() <= 6


def test_chatty_stderr_does_not_block_the_writer(monkeypatch, tmp_path):
    script = (
        "import sys; sys.stderr.write('noise\\n' * 500_000); sys.stderr.flush();"
        "data = sys.stdin.buffer.read(); open(sys.argv[1].removeprefix('file:'), 'wb').write(data)"
    )
    monkeypatch.setattr(
        video_writer, "_encode_command", lambda output, **_: [sys.executable, "-c", script, f"file:{output}"]
    )
    path = tmp_path / "fake.mp4"
    write_solid_video(path, 3)
    assert path.stat().st_size == 3 * WIDTH * HEIGHT * 3
    assert listing(tmp_path) == ["fake.mp4"]


# --- audio -------------------------------------------------------------------------------------------------------


def test_audio_is_added_and_cut_to_the_video(tmp_path, driver_with_audio):
    assert has_audio_stream(driver_with_audio)
    path = tmp_path / "talk.mp4"
    writer = write_solid_video(path, 25, audio_from=driver_with_audio)
    assert writer.audio_source == driver_with_audio
    assert has_audio_stream(path)
    assert probe_video(path).duration == pytest.approx(1.0, abs=0.05)  # the container spans the longer stream
    _, frames = read_frames(path)
    assert len(frames) == 25
    assert listing(tmp_path) == ["talk.mp4"]


def test_short_audio_does_not_cut_the_video(tmp_path):
    driver = make_driver(tmp_path / "driver.mp4", frames=25, audio_seconds=0.4)
    path = tmp_path / "out.mp4"
    write_solid_video(path, 25, audio_from=driver)
    assert has_audio_stream(path)
    _, frames = read_frames(path)
    assert len(frames) == 25


def test_driver_without_audio_gives_a_silent_video(tmp_path):
    driver = make_driver(tmp_path / "silent.mp4", frames=10, audio_seconds=None)
    assert not has_audio_stream(driver)
    path = tmp_path / "out.mp4"
    writer = write_solid_video(path, 10, audio_from=driver)
    assert writer.audio_source is None
    assert not has_audio_stream(path)


def test_missing_audio_source_is_an_input_error_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"nope\.mp4: no such file$"):
        VideoWriter(out / "video.mp4", fps=25, width=WIDTH, height=HEIGHT, audio_from=tmp_path / "nope.mp4")
    assert listing(out) == []


def test_mux_failure_leaves_nothing(monkeypatch, tmp_path, driver_with_audio):
    real = video_writer._mux_command
    monkeypatch.setattr(
        video_writer, "_mux_command", lambda *a, **k: ["nosuchcodec" if arg == "aac" else arg for arg in real(*a, **k)]
    )
    path = tmp_path / "out.mp4"
    with pytest.raises(Export3DError, match=rf"^{path}: adding the audio of {driver_with_audio} failed: .*encoder"):
        write_solid_video(path, 5, audio_from=driver_with_audio)
    assert listing(tmp_path) == []


# --- per-frame times (a variable-frame-rate driver) -----------------------------------------------------------

IRREGULAR_TIMES = np.array([0.25, 0.29, 0.35, 0.383, 0.75, 0.77, 1.15, 1.25])


def decoded_audio(path: Path, rate: int = 8000) -> np.ndarray:
    """The first audio stream as mono float samples in [-1, 1]."""
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1"]
    raw = subprocess.run([*cmd, "-ar", str(rate), "-f", "s16le", "pipe:1"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.int16) / 32768.0


def test_frame_times_are_kept_frame_by_frame(tmp_path):
    path = tmp_path / "vfr.mp4"
    # An odd size too: the padded frames must still line up with the Matroska stream's declared size.
    writer = write_solid_video(path, len(IRREGULAR_TIMES), width=63, height=47, frame_times=IRREGULAR_TIMES)
    assert listing(tmp_path) == ["vfr.mp4"]
    info = probe_video(path)
    np.testing.assert_allclose(info.frame_times, IRREGULAR_TIMES - IRREGULAR_TIMES[0], atol=1 / 90000)
    assert info.duration == pytest.approx(writer.duration) and writer.duration == pytest.approx(1.0 + 1 / 25)
    _, frames = read_frames(path)
    assert len(frames) == len(IRREGULAR_TIMES)  # the last frame too (it needs a duration to be shown)
    for frame, colour in zip(frames, solid_colours(len(IRREGULAR_TIMES)), strict=True):
        assert np.abs(frame[:47, :63].astype(int) - colour).max() <= 6


def test_fewer_frames_than_times_end_where_the_next_frame_would_start(tmp_path):
    writer = write_solid_video(tmp_path / "cut.mp4", 4, frame_times=IRREGULAR_TIMES)
    assert writer.duration == pytest.approx(0.75 - 0.25)
    assert probe_video(tmp_path / "cut.mp4").duration == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize(("first_time", "heard_at_once"), [(0.5, True), (0.0, False)])
def test_the_audio_starts_at_the_first_frames_moment(tmp_path, first_time, heard_at_once):
    """The driver is silent for 0.5 s, then a tone: an output whose first frame is stamped 0.5 s starts with
    the tone; one stamped 0 starts silent. Either way the sound lasts as long as the frames."""
    driver = tmp_path / "late_tone.mkv"
    tone = "aevalsrc='if(gte(t\\,0.5)\\,0.8*sin(2*PI*440*t)\\,0)':d=2:s=8000"
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:d=2"]
    subprocess.run([*cmd, "-f", "lavfi", "-i", tone, "-c:v", "libx264", "-c:a", "aac", str(driver)], check=True)
    times = first_time + np.array([0.0, 0.04, 0.1, 0.14, 0.3, 0.34, 0.38, 0.5, 0.6, 0.7])
    path = tmp_path / "out.mp4"
    writer = write_solid_video(path, len(times), audio_from=driver, frame_times=times)
    samples = decoded_audio(path)
    opening = np.sqrt(np.mean(samples[: 8000 // 10] ** 2))  # the first 0.1 s
    assert (opening > 0.3) == heard_at_once, opening
    assert len(samples) / 8000 == pytest.approx(writer.duration, abs=0.03)
    np.testing.assert_allclose(probe_video(path).frame_times, times - times[0], atol=1 / 90000)


@pytest.mark.parametrize(
    ("times", "message"),
    [
        (np.array([0.0, 0.04, 0.04]), "strictly increase"),
        (np.array([0.0, 0.04, 0.0400002]), "strictly increase"),  # one 1 µs tick: found before the render
        (np.array([0.0, np.nan]), "finite"),
        (np.zeros((2, 2)), "1-D"),
        (np.array([]), "non-empty"),
    ],
)
def test_bad_frame_times_are_value_errors_before_ffmpeg_starts(tmp_path, times, message):
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / "out.mp4", fps=25, width=WIDTH, height=HEIGHT, frame_times=times)
    assert listing(tmp_path) == []


def test_a_frame_beyond_the_given_times_is_a_value_error_and_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="frame 3 has no time"):
        write_solid_video(tmp_path / "out.mp4", 3, frame_times=np.array([0.0, 0.04]))
    assert listing(tmp_path) == []


# --- failures leave nothing behind -------------------------------------------------------------------------------


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_exception_in_the_with_block_leaves_nothing(tmp_path, error):
    path = tmp_path / "out.mp4"
    with pytest.raises(type(error)), VideoWriter(path, fps=25, width=WIDTH, height=HEIGHT) as writer:
        writer.write(solid_frame(solid_colours(1)[0]))
        raise error
    assert writer._proc.poll() is not None
    assert listing(tmp_path) == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(solid_frame(solid_colours(1)[0]))
    with pytest.raises(ValueError, match="aborted"):
        writer.close()


def test_ctrl_c_during_a_blocked_write_kills_ffmpeg(monkeypatch, tmp_path):
    monkeypatch.setattr(
        video_writer, "_encode_command", lambda *a, **k: [sys.executable, "-c", "import time; time.sleep(60)"]
    )

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    writer = VideoWriter(tmp_path / "out.mp4", fps=25, width=256, height=256)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt), writer:
            while True:  # a 192 KiB frame overfills the pipe: write blocks as ffmpeg never reads
                writer.write(np.zeros((256, 256, 3), np.uint8))
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert writer._proc.poll() is not None
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [("libx264", "nosuchcodec", r"(Unknown encoder|Error selecting an encoder)"), (FFMPEG, "false", "exit code 1")],
)
def test_ffmpeg_failure_is_one_line_and_leaves_nothing(monkeypatch, tmp_path, old, new, reason):
    patch_encoder(monkeypatch, old, new)
    path = tmp_path / "out.mp4"
    with pytest.raises(Export3DError, match=rf"^{path}: video encoding failed: .*{reason}") as caught:
        write_solid_video(path, 30)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 1
    assert listing(tmp_path) == []


def test_ffmpeg_failing_at_the_end_is_reported_with_its_last_error_line(monkeypatch, tmp_path):
    # Reads every frame, then fails as a full disk would when the index is written.
    script = (
        "import sys; sys.stdin.buffer.read();"
        "sys.stderr.write('[mp4 @ 0x1234] first problem\\n[out#0/mp4 @ 0x1234] No space left on device.\\n"
        "Conversion failed!\\n'); sys.exit(3)"
    )
    monkeypatch.setattr(video_writer, "_encode_command", lambda *a, **k: [sys.executable, "-c", script])
    path = tmp_path / "out.mp4"
    with pytest.raises(Export3DError, match=rf"^{path}: video encoding failed: No space left on device$"):
        write_solid_video(path, 3)
    assert listing(tmp_path) == []


def test_existing_file_is_replaced_only_on_success(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"previous render")
    with pytest.raises(RuntimeError), VideoWriter(path, fps=25, width=WIDTH, height=HEIGHT) as writer:
        writer.write(solid_frame(solid_colours(1)[0]))
        raise RuntimeError("interrupted render")
    assert path.read_bytes() == b"previous render"
    assert listing(tmp_path) == ["out.mp4"]
    write_solid_video(path, 5)
    assert len(read_frames(path)[1]) == 5
    assert listing(tmp_path) == ["out.mp4"]


def test_dropped_writer_kills_ffmpeg_and_removes_its_temporary_file(tmp_path):
    writer = VideoWriter(tmp_path / "out.mp4", fps=25, width=WIDTH, height=HEIGHT)
    writer.write(solid_frame(solid_colours(1)[0]))
    proc = writer._proc
    del writer
    gc.collect()
    assert proc.poll() is not None
    assert listing(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_folder_is_a_usage_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(UsageError, match=r"locked is not writable$"):
            VideoWriter(folder / "out.mp4", fps=25, width=WIDTH, height=HEIGHT)
    finally:
        folder.chmod(0o755)
    assert listing(folder) == []


def test_folder_that_is_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(UsageError, match=r"cannot create the output folder .*taken"):
        VideoWriter(tmp_path / "taken" / "out.mp4", fps=25, width=WIDTH, height=HEIGHT)


# --- misuse ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((HEIGHT, WIDTH, 3), np.float32),
        np.zeros((HEIGHT, WIDTH + 1, 3), np.uint8),
        np.zeros((HEIGHT, WIDTH, 4), np.uint8),
        np.zeros((HEIGHT, WIDTH), np.uint8),
        [[0, 0, 0]],
    ],
)
def test_wrong_frame_is_a_value_error(tmp_path, frame):
    writer = VideoWriter(tmp_path / "out.mp4", fps=25, width=WIDTH, height=HEIGHT)
    with pytest.raises(ValueError, match=r"frame must be uint8 \[48, 64, 3\]"), writer:
        writer.write(frame)
    assert listing(tmp_path) == []


def test_write_after_close_is_a_value_error(tmp_path):
    writer = write_solid_video(tmp_path / "out.mp4", 2)
    with pytest.raises(ValueError, match="closed"):
        writer.write(solid_frame(solid_colours(1)[0]))


def test_closing_without_frames_is_a_value_error(tmp_path):
    with (
        pytest.raises(ValueError, match="no frames were written"),
        VideoWriter(tmp_path / "out.mp4", fps=25, width=WIDTH, height=HEIGHT),
    ):
        pass
    assert listing(tmp_path) == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fps": 0}, "fps must be a positive number"),
        ({"fps": float("nan")}, "fps must be a positive number"),
        ({"width": 0}, "width and height must be positive"),
        ({"quality_crf": 52}, "quality_crf must be in 0..51"),
        ({"preset": "quick"}, "preset must be one of"),
    ],
)
def test_invalid_arguments_are_value_errors(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        VideoWriter(tmp_path / "out.mp4", **{"fps": 25, "width": WIDTH, "height": HEIGHT, **options})
    assert listing(tmp_path) == []
