"""Tests for the Matroska stream of timed raw frames (export3d_cli.media.matroska_stream).

Two independent checks: the bytes parse as the EBML tree the spec describes (a small reader written here from
RFC 8794's variable-length integers), and ffmpeg's own demuxer reads the stream back with every frame's pixels
and time.
"""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest

from export3d_cli.media.matroska_stream import MatroskaFrameStream, increasing_at_stream_resolution

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
WIDTH, HEIGHT = 8, 6


def read_vint(data: bytes, offset: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at ``offset``: (value, offset after it)."""
    first = data[offset]
    length = 8 - first.bit_length() + 1
    value = int.from_bytes(data[offset : offset + length], "big")
    if not keep_marker:
        value &= (1 << (7 * length)) - 1
    return value, offset + length


def parse(data: bytes, start: int = 0, end: int | None = None) -> list[tuple[int, bytes]]:
    """Top-level elements of ``data[start:end]`` as (id, payload); an unknown size runs to the end."""
    end = len(data) if end is None else end
    elements = []
    offset = start
    while offset < end:
        element, offset = read_vint(data, offset, keep_marker=True)
        size_start = offset
        size, offset = read_vint(data, offset, keep_marker=False)
        unknown = size == (1 << (7 * (offset - size_start))) - 1
        payload_end = end if unknown else offset + size
        elements.append((element, data[offset:payload_end]))
        offset = payload_end
    return elements


def children(payload: bytes) -> dict[int, bytes]:
    return dict(parse(payload))


def element(stream: MatroskaFrameStream, picture: np.ndarray, seconds: float, duration: float) -> bytes:
    """One frame's whole element, as the video writer sends it: the header, then the pixels."""
    return stream.frame_header(seconds, duration) + picture.tobytes()


def frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(count)]


def test_the_stream_is_the_ebml_tree_the_spec_describes():
    stream = MatroskaFrameStream(width=WIDTH, height=HEIGHT)
    pictures = frames(2)
    data = stream.header() + element(stream, pictures[0], 0.5, 0.04) + element(stream, pictures[1], 0.54, 0.1)
    ebml, segment = parse(data)
    assert ebml[0] == 0x1A45DFA3 and children(ebml[1])[0x4282] == b"matroska"
    assert segment[0] == 0x18538067
    body = parse(segment[1])
    assert [element for element, _ in body] == [0x1549A966, 0x1654AE6B, 0x1F43B675, 0x1F43B675]
    assert int.from_bytes(children(body[0][1])[0x2AD7B1], "big") == 1000  # 1 µs ticks
    track = children(children(body[1][1])[0xAE])
    assert track[0x86] == b"V_UNCOMPRESSED"
    video = children(track[0xE0])
    assert (int.from_bytes(video[0xB0], "big"), int.from_bytes(video[0xBA], "big")) == (WIDTH, HEIGHT)
    assert video[0x2EB524] == b"RGB\x18"
    for (_, cluster), seconds, duration, picture in zip(body[2:], (0.5, 0.54), (0.04, 0.1), pictures, strict=True):
        parts = children(cluster)
        assert int.from_bytes(parts[0xE7], "big") == round(seconds * 1e6)
        group = children(parts[0xA0])
        assert int.from_bytes(group[0x9B], "big") == round(duration * 1e6)
        block = group[0xA1]
        assert block[:4] == b"\x81\x00\x00\x00"  # track 1, relative time 0, no flags
        assert block[4:] == picture.tobytes()


def test_ffmpeg_reads_back_every_frame_with_its_pixels_and_time():
    stream = MatroskaFrameStream(width=WIDTH, height=HEIGHT)
    times = [0.0, 0.04, 0.1, 0.1333, 0.5, 0.52]
    pictures = frames(len(times))
    data = stream.header() + b"".join(
        element(stream, picture, t, 0.02) for picture, t in zip(pictures, times, strict=True)
    )
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-f", "matroska", "-i", "pipe:0"]
    pixels = subprocess.run(
        [*cmd, "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    decoded = np.frombuffer(pixels, np.uint8).reshape(-1, HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(decoded, np.stack(pictures))  # lossless, RGB order, top row first
    crc = subprocess.run([*cmd, "-c", "copy", "-f", "framecrc", "-"], input=data, capture_output=True, check=True)
    lines = [line for line in crc.stdout.decode().splitlines() if line.startswith("0,")]
    assert "#tb 0: 1/1000000" in crc.stdout.decode()
    assert [int(line.split(",")[2]) for line in lines] == [round(t * 1e6) for t in times]


@pytest.mark.parametrize(
    ("seconds", "duration", "message"),
    [
        (float("nan"), 0.04, "finite number >= 0"),
        (-0.1, 0.04, "finite number >= 0"),
        (0.2, 0.0, "duration must be a finite number > 0"),
        (0.1, 0.04, "must increase"),  # not after 0.1
        (0.1000004, 0.04, "must increase"),  # the same 1 µs tick
    ],
)
def test_bad_times_are_refused(seconds, duration, message):
    stream = MatroskaFrameStream(width=WIDTH, height=HEIGHT)
    stream.frame_header(0.1, 0.04)
    with pytest.raises(ValueError, match=message):
        stream.frame_header(seconds, duration)


@pytest.mark.parametrize(
    ("seconds", "increasing"),
    [
        ([], True),
        ([3.0], True),
        ([0.0, 1e-6, 0.04], True),  # one tick apart is enough
        ([0.0, 4e-7], False),  # increasing in floating point, one tick at the stream's resolution
        ([0.0, 0.04, 0.04], False),
        ([0.0, 0.08, 0.04], False),
        ([1000.5, 1000.500001], True),  # far from zero: ticks are counted from the first time
    ],
)
def test_increasing_at_stream_resolution(seconds, increasing):
    assert increasing_at_stream_resolution(np.array(seconds)) is increasing
