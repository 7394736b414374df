"""Tests for streaming video decode (export3d_cli.media.video_reader).

Test videos are made on the fly with the ffmpeg binary imageio-ffmpeg ships. Exact content checks use ffv1
(lossless RGB) so a frame's pixels identify its index; every test runs under an alarm so a hang fails instead
of blocking the suite.
"""

from __future__ import annotations

import gc
import itertools
import math
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from export3d_cli.errors import InputError
from export3d_cli.media import video_reader
from export3d_cli.media.video_reader import VideoInfo, VideoReader, probe_video, read_video_frames

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
LOSSLESS = ("-c:v", "ffv1")


@pytest.fixture(autouse=True)
def _deadline():
    """Fail a test that runs over 30 s (pytest-timeout is not installed)."""

    def expire(signum, frame):
        raise TimeoutError("test exceeded its 30 s deadline")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def make_frames(count: int, width: int, height: int) -> np.ndarray:
    """Frames [T, H, W, 3] uint8: red encodes the frame index, green and blue the column and row."""
    t = np.arange(count, dtype=np.int64)[:, None, None]
    y = np.arange(height, dtype=np.int64)[None, :, None]
    x = np.arange(width, dtype=np.int64)[None, None, :]
    red = np.broadcast_to((t * 7) % 256, (count, height, width))
    green = np.broadcast_to(x * 255 // max(width - 1, 1), (count, height, width))
    blue = np.broadcast_to(y * 255 // max(height - 1, 1), (count, height, width))
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


def write_video(
    path: Path,
    frames: np.ndarray,
    *,
    rate: str = "25",
    codec: tuple[str, ...] = LOSSLESS,
    audio: bool = False,
) -> Path:
    """Encode frames [T, H, W, 3] uint8 with ffmpeg; ``audio`` adds a 1 s sine track."""
    height, width = frames.shape[1:3]
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", rate, "-i", "-"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "pcm_s16le"]
    cmd += [*codec, str(path)]
    subprocess.run(cmd, input=frames.tobytes(), check=True, capture_output=True)
    return path


def ffmpeg_header(path: Path) -> str:
    return subprocess.run([FFMPEG, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """A lossless 64x48, 30-frame, 25 fps video and its frames."""
    frames = make_frames(30, 64, 48)
    path = write_video(tmp_path_factory.mktemp("clip") / "clip.mkv", frames)
    return path, frames


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """300 frames of 128x128: long enough that holding every frame would show in memory."""
    return write_video(tmp_path_factory.mktemp("long") / "long.mkv", make_frames(300, 128, 128))


def fake_ffmpeg(monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """Replace the decode command with a Python script (the probe still runs the real ffmpeg)."""
    monkeypatch.setattr(video_reader, "_decode_command", lambda path: [sys.executable, "-c", script])


# --- decoding ---------------------------------------------------------------------------------------------------


def test_frames_are_exact_in_order_and_writable(clip):
    path, expected = clip
    with VideoReader(path) as reader:
        assert reader.info == VideoInfo(
            path=path,
            fps=25.0,
            width=64,
            height=48,
            frame_count=30,
            duration=pytest.approx(1.2),
            has_audio=False,
            warnings=(),
        )
        frames = list(reader)
    assert reader.frames_read == 30
    assert reader.error is None
    for index, frame in enumerate(frames):
        assert frame.shape == (48, 64, 3)
        assert frame.dtype == np.uint8
        assert frame.flags.writeable
        np.testing.assert_array_equal(frame, expected[index], err_msg=f"frame {index}")


def test_read_video_frames_yields_every_frame(clip):
    path, expected = clip
    frames = list(read_video_frames(path))
    np.testing.assert_array_equal(np.stack(frames), expected)


@pytest.mark.parametrize(("rate", "fps"), [("25", 25.0), ("30000/1001", 30000 / 1001), ("24000/1001", 24000 / 1001)])
def test_fps_is_read_exactly(tmp_path, rate, fps):
    path = write_video(tmp_path / "rate.mkv", make_frames(30, 32, 32), rate=rate)
    info = probe_video(path)
    assert info.fps == pytest.approx(fps, rel=1e-9)
    assert info.frame_count == 30
    assert info.warnings == ()
    assert sum(1 for _ in read_video_frames(path)) == 30


def test_odd_frame_size_is_reported_and_decoded(tmp_path):
    expected = make_frames(5, 63, 47)
    path = write_video(tmp_path / "odd.mkv", expected)
    with VideoReader(path) as reader:
        assert (reader.info.width, reader.info.height) == (63, 47)
        np.testing.assert_array_equal(np.stack(list(reader)), expected)


def test_lossy_h264_mp4_is_close(tmp_path):
    expected = make_frames(20, 64, 48)
    path = write_video(tmp_path / "lossy.mp4", expected, codec=("-c:v", "libx264", "-pix_fmt", "yuv420p"))
    frames = np.stack(list(read_video_frames(path)))
    assert frames.shape == expected.shape
    assert np.abs(frames.astype(int) - expected).mean() < 8


def test_rotation_metadata_is_applied(tmp_path, clip):
    source, expected = clip
    rotated = tmp_path / "rotated.mkv"
    attempts = [
        [FFMPEG, "-y", "-loglevel", "error", "-display_rotation", "90", "-i", str(source), "-c", "copy", str(rotated)],
        [
            FFMPEG,
            "-y",
            "-loglevel",
            "error",
            "-i",
            str(source),
            "-c",
            "copy",
            "-metadata:s:v",
            "rotate=90",
            str(rotated),
        ],
    ]
    for cmd in attempts:
        if subprocess.run(cmd, capture_output=True).returncode == 0 and "rotat" in ffmpeg_header(rotated):
            break
    else:
        pytest.skip("this ffmpeg cannot write rotation metadata")
    with VideoReader(rotated) as reader:
        assert (reader.info.width, reader.info.height) == (48, 64)
        frames = list(reader)
    assert len(frames) == 30
    # 90 degrees of display rotation is counter-clockwise, as np.rot90 turns.
    for index, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, np.rot90(expected[index]), err_msg=f"frame {index}")


def test_has_audio(tmp_path):
    frames = make_frames(30, 32, 32)
    assert probe_video(write_video(tmp_path / "sound.mkv", frames, audio=True)).has_audio
    assert not probe_video(write_video(tmp_path / "silent.mkv", frames)).has_audio


# --- damaged and unusable files ----------------------------------------------------------------------------------


def test_truncated_video_yields_the_frames_before_the_cut(tmp_path, clip):
    source, expected = clip
    data = source.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) * 6 // 10])
    with VideoReader(cut) as reader:
        frames = list(reader)
    assert 0 < len(frames) < 30
    assert reader.frames_read == len(frames)
    assert reader.error is not None
    assert "stream ended after" in reader.error
    assert "\n" not in reader.error
    for index, frame in enumerate(frames[:-1]):  # the last one may be damaged by the cut
        np.testing.assert_array_equal(frame, expected[index])


def test_truncated_mp4_without_index_is_not_a_video(tmp_path):
    source = write_video(tmp_path / "full.mp4", make_frames(30, 64, 48), codec=("-c:v", "libx264"))
    data = source.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])  # the moov index sits at the end and is lost
    with pytest.raises(InputError, match=r"cut\.mp4: not a video \(.*moov atom not found"):
        probe_video(cut)


def test_video_whose_frames_do_not_decode(tmp_path):
    source = write_video(
        tmp_path / "full.mp4", make_frames(30, 64, 48), codec=("-c:v", "libx264", "-movflags", "+faststart")
    )
    data = bytearray(source.read_bytes())
    start = data.find(b"mdat") + 8
    data[start:] = np.random.default_rng(0).integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"broken\.mp4: no decodable video frames \(.+\)$") as caught:
        VideoReader(broken)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("garbage.mp4", np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes(), "not a video ("),
        ("notes.txt", b"hello\nworld\n", "not a video (Invalid data found"),
        ("empty.mp4", b"", "empty file"),
    ],
)
def test_unusable_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        VideoReader(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert caught.value.exit_code == 2


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(InputError, match=r"nope\.mp4: no such file$"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match=r": is a directory$"):
        probe_video(tmp_path)


def test_image_is_not_a_video(tmp_path):
    png = tmp_path / "face.png"
    subprocess.run([FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x48", "-frames:v", "1", png])
    assert png.stat().st_size > 0
    with pytest.raises(InputError, match=r"face\.png: not a video \(png image\)$"):
        probe_video(png)
    disguised = tmp_path / "face.mp4"
    disguised.write_bytes(png.read_bytes())
    with pytest.raises(InputError, match=r"face\.mp4: not a video \(png image\)$"):
        probe_video(disguised)


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = tmp_path / "tone.m4a"
    subprocess.run(
        [FFMPEG, "-loglevel", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(path)], check=True
    )
    with pytest.raises(InputError, match=r"tone\.m4a: has no video stream$"):
        probe_video(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"pipe\.mp4: not a regular file$"):
        VideoReader(fifo)


# --- process lifetime --------------------------------------------------------------------------------------------


def test_breaking_early_kills_ffmpeg_promptly(long_clip):
    started = time.monotonic()
    with VideoReader(long_clip) as reader:
        for _ in reader:
            break
    assert time.monotonic() - started < 5
    assert reader._proc.poll() is not None
    assert not reader._pump.is_alive()
    assert not reader._stderr.is_alive()
    assert reader.frames_read == 1
    assert reader.error is None


def test_exception_in_loop_body_kills_ffmpeg(long_clip):
    reader = VideoReader(long_clip)
    with pytest.raises(RuntimeError, match="boom"), reader:
        for _ in reader:
            raise RuntimeError("boom")
    assert reader._proc.poll() is not None


def test_dropped_reader_kills_ffmpeg(long_clip):
    reader = VideoReader(long_clip)
    next(reader)
    proc = reader._proc
    del reader
    gc.collect()
    assert proc.wait(timeout=5) is not None


def test_close_is_idempotent_and_ends_iteration(clip):
    path, _ = clip
    reader = VideoReader(path)
    next(reader)
    reader.close()
    reader.close()
    assert list(reader) == []
    unstarted = VideoReader(path)
    unstarted.close()
    unstarted.close()
    with pytest.raises(ValueError, match="closed"):
        next(unstarted)


def test_stall_watchdog_stops_a_silent_ffmpeg(monkeypatch, clip):
    path, _ = clip
    fake_ffmpeg(
        monkeypatch,
        f"import sys, time; sys.stdout.buffer.write(bytes({64 * 48 * 3})); sys.stdout.flush(); time.sleep(60)",
    )
    started = time.monotonic()
    with VideoReader(path, stall_timeout=1.0) as reader:
        frames = list(reader)
    assert 1.0 <= time.monotonic() - started < 5
    assert len(frames) == 1
    assert reader.error == "ffmpeg sent no frame data for 1 s; decoding stopped"
    assert reader._proc.poll() is not None


def test_stall_before_any_frame_is_an_input_error(monkeypatch, clip):
    path, _ = clip
    fake_ffmpeg(monkeypatch, "import time; time.sleep(60)")
    reader = VideoReader(path, stall_timeout=0.5)
    with reader, pytest.raises(InputError, match=r"no decodable video frames \(ffmpeg sent no frame data for 0.5 s"):
        next(reader)
    assert reader._proc.poll() is not None


def test_ctrl_c_while_waiting_kills_ffmpeg(monkeypatch, clip):
    path, _ = clip
    fake_ffmpeg(monkeypatch, "import time; time.sleep(60)")

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    reader = VideoReader(path, stall_timeout=20)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            next(reader)
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert reader._proc.poll() is not None
    assert not reader._pump.is_alive()


def test_slow_consumer_is_not_a_stall(clip):
    path, _ = clip
    with VideoReader(path, stall_timeout=0.5) as reader:
        for index, _ in enumerate(reader):
            if index < 2:
                time.sleep(0.8)
    assert reader.frames_read == 30
    assert reader.error is None


def test_partial_last_frame_is_dropped(monkeypatch, clip):
    path, _ = clip
    frame_bytes = 64 * 48 * 3
    fake_ffmpeg(monkeypatch, f"import sys; sys.stdout.buffer.write(bytes({frame_bytes + frame_bytes // 2}))")
    with VideoReader(path) as reader:
        frames = list(reader)
    assert len(frames) == 1
    assert reader.error.startswith(f"last frame truncated ({frame_bytes // 2} of {frame_bytes} bytes)")


def test_ffmpeg_failure_is_reported_with_its_last_error_line(monkeypatch, clip):
    path, _ = clip
    fake_ffmpeg(
        monkeypatch,
        f"import sys; sys.stdout.buffer.write(bytes({64 * 48 * 3})); sys.stdout.flush();"
        "sys.stderr.write('[h264 @ 0x1234] first problem\\n[h264 @ 0x1234] Disk on fire.\\nConversion failed!\\n');"
        "sys.exit(3)",
    )
    with VideoReader(path) as reader:
        assert len(list(reader)) == 1
    assert reader.error.startswith("ffmpeg failed (exit code 3)")
    assert reader.error.endswith(": Disk on fire")


def test_chatty_stderr_does_not_block_decoding(monkeypatch, clip):
    path, _ = clip
    fake_ffmpeg(
        monkeypatch,
        "import sys; sys.stderr.write('noise\\n' * 500_000); sys.stderr.flush();"
        f"sys.stdout.buffer.write(bytes({64 * 48 * 3 * 3}))",
    )
    with VideoReader(path) as reader:
        assert len(list(reader)) == 3


def test_memory_stays_flat_over_a_long_video(long_clip):
    frame_bytes = 128 * 128 * 3
    tracemalloc.start()
    try:
        count = 0
        with VideoReader(long_clip) as reader:
            for frame in reader:
                count += 1
                assert frame.shape == (128, 128, 3)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 300
    assert reader.error is None
    assert peak < 8 * frame_bytes, f"peak {peak} bytes for {frame_bytes}-byte frames"


# --- header parsing ----------------------------------------------------------------------------------------------

OLD_STYLE_HEADER = """\
Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'file:/videos/phone.mp4':
  Duration: 00:00:02.50, start: 0.000000, bitrate: 9000 kb/s
    Stream #0:0(eng): Video: h264 (avc1 / 0x31637661), yuv420p(tv, bt709), 1920x1080, 8000 kb/s, {rate}, 90k tbn
    Metadata:
      rotate          : 90
    Side data:
      displaymatrix: rotation of -90.00 degrees
    Stream #0:1(eng): Audio: aac (mp4a / 0x6134706D), 48000 Hz, stereo, fltp, 128 kb/s
"""


@pytest.mark.parametrize(
    ("rate", "fps", "warned"),
    [
        ("23.98 fps, 23.98 tbr", 24000 / 1001, False),
        ("29.98 fps, 29.98 tbr", 29.98, False),
        ("12.50 fps, 12.50 tbr", 12.5, False),
        ("50 tbr", 50.0, False),
        ("1k tbr", 25.0, True),
        ("0 fps", 25.0, True),
    ],
)
def test_header_without_output_stream_falls_back_to_rotated_coded_size(rate, fps, warned):
    info = video_reader._parse_probe(Path("phone.mp4"), OLD_STYLE_HEADER.format(rate=rate), 0)
    assert (info.width, info.height) == (1080, 1920)
    assert info.fps == pytest.approx(fps)
    assert info.duration == pytest.approx(2.5)
    assert info.frame_count == round(2.5 * info.fps)
    assert info.has_audio
    assert bool(info.warnings) == warned
    if warned:
        assert info.warnings == ("phone.mp4: the video stream has no usable frame rate; assuming 25 fps",)


def test_cover_art_is_not_a_video_stream():
    header = """\
Input #0, mp3, from 'file:/music/song.mp3':
  Duration: 00:03:00.00, start: 0.025057, bitrate: 320 kb/s
  Stream #0:0: Audio: mp3 (mp3float), 44100 Hz, stereo, fltp, 320 kb/s
  Stream #0:1: Video: mjpeg (Baseline), yuvj420p(pc, bt470bg/unknown/unknown), 500x500, 90k tbr, 90k tbn (attached pic)
"""
    with pytest.raises(InputError, match=r"song\.mp3: has no video stream$"):
        video_reader._parse_probe(Path("song.mp3"), header, 0)


# ------------------------------------------------------------------------------------- frame counts and timing

VFR_FRAMES = 30


def _lavfi_clip(path: Path, *args: str) -> Path:
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=25"]
    cmd += ["-frames:v", str(VFR_FRAMES), *args, "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(cmd, check=True)
    return path


def test_a_variable_frame_rate_video_gives_each_decoded_frame_once_at_its_average_rate(tmp_path):
    """Frames 11-29 are stamped 4/3 apart: 30 frames over 1.56 s. Resampling to 25 fps gave 39."""
    video = _lavfi_clip(tmp_path / "vfr.mkv", "-vf", "setpts='(N+if(gt(N\\,10)\\,N/3\\,0))/25/TB'", "-fps_mode", "vfr")
    info = probe_video(video)
    frames = list(read_video_frames(video))
    assert len(frames) == VFR_FRAMES == info.frame_count
    assert info.fps == pytest.approx(VFR_FRAMES / 1.56, rel=0.02)
    assert any("variable frame rate" in warning for warning in info.warnings)
    # Every frame of testsrc differs from the next: none was repeated.
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))
    # Each frame's own time, as setpts stamped it (truncated to its 1/25 s time base; Matroska keeps 1 ms).
    stamped = [math.floor(n + (n / 3 if n > 10 else 0)) / 25 for n in range(VFR_FRAMES)]
    np.testing.assert_allclose(info.frame_times, stamped, atol=0.0015)


def test_a_video_whose_first_frame_is_stamped_late_gives_exactly_its_frames(tmp_path):
    video = _lavfi_clip(tmp_path / "late.mkv", "-output_ts_offset", "0.0417")
    info = probe_video(video)
    assert sum(1 for _ in read_video_frames(video)) == VFR_FRAMES
    assert info.fps == pytest.approx(25.0)
    assert not any("variable" in warning for warning in info.warnings)
    assert info.frame_times is None  # a constant rate: frame k is at k / fps


def test_packet_timing_parses_framecrc_and_tells_constant_from_variable_rates():
    header = "#tb 0: 1/1000\n#media_type 0: video\n"
    constant = header + "".join(f"0, {40 * i}, {40 * i}, 40, 100, 0x0\n" for i in range(10))
    timing = video_reader.parse_packet_timing(constant)
    assert (timing.frames, timing.variable) == (10, False) and timing.duration == pytest.approx(0.4)
    # Matroska rounds to 1 ms: 33/34 ms intervals of a 29.97 fps stream are not a variable rate.
    rounded = header + "".join(
        f"0, {round(i * 1000 / 29.97)}, {round(i * 1000 / 29.97)}, 33, 9, 0x0\n" for i in range(9)
    )
    assert not video_reader.parse_packet_timing(rounded).variable
    jumpy = header + "".join(f"0, {t}, {t}, 40, 100, 0x0\n" for t in (0, 40, 80, 200, 240))
    timing = video_reader.parse_packet_timing(jumpy)
    assert timing.variable and timing.frames == 5 and timing.duration == pytest.approx(0.28)
    np.testing.assert_allclose(timing.times, [0, 0.04, 0.08, 0.2, 0.24])
    # Packets come in decode order (B-frames); the times are in presentation order.
    reordered = header + "".join(f"0, {i * 40 - 80}, {t}, 40, 100, 0x0\n" for i, t in enumerate((0, 80, 40, 200)))
    np.testing.assert_allclose(video_reader.parse_packet_timing(reordered).times, [0, 0.04, 0.08, 0.2])
    assert video_reader.parse_packet_timing("#tb 0: 1/1000\n0, 0, 0, 40, 1, 0x0\n") is None  # one packet
    assert video_reader.parse_packet_timing("garbage") is None
