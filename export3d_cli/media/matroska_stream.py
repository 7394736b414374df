"""A minimal Matroska stream of raw RGB frames, each with its own timestamp: how per-frame times reach ffmpeg.

Why: ffmpeg's ``rawvideo`` input has no timestamps (frame k is shown at k / rate), so a video rendered from a
variable-frame-rate driver could only be written at the driver's average rate, and a frame could sit up to the
driver's jitter away from its moment (and from the audio). Matroska carries a timestamp on every block and
ffmpeg's demuxer reads it from a pipe, so the writer wraps each frame in one. Only what ffmpeg needs is written:

- the EBML header (DocType ``matroska``);
- a Segment of unknown size (a stream: its length is not known when it starts);
- Info with a TimestampScale of 1 µs, so a timestamp is off by at most 0.5 µs;
- one video track, ``V_UNCOMPRESSED`` with ColourSpace ``RGB\\x18`` (packed rgb24, top row first), which
  ffmpeg's rawvideo decoder maps to ``rgb24``;
- per frame, a Cluster holding that frame's timestamp and one BlockGroup: the Block (at relative time 0) and
  its BlockDuration. The duration matters for the last frame: without one ffmpeg gives it none, and the MP4's
  edit list then ends where that frame starts, so players never show it.

Every size is written as an 8-byte EBML variable-length integer: a frame is up to 120 MB (40 MP), above what
the shorter forms hold, and one fixed form keeps the writer free of length cases.
Spec: RFC 9559 (Matroska) and RFC 8794 (EBML).
"""

from __future__ import annotations

import math
import struct

import numpy as np

__all__ = ["MatroskaFrameStream", "increasing_at_stream_resolution"]

# Element IDs (RFC 9559 / RFC 8794); each ID's bytes already carry its own length marker.
_EBML = 0x1A45DFA3
_EBML_VERSION = 0x4286
_EBML_READ_VERSION = 0x42F7
_EBML_MAX_ID_LENGTH = 0x42F2
_EBML_MAX_SIZE_LENGTH = 0x42F3
_DOC_TYPE = 0x4282
_DOC_TYPE_VERSION = 0x4287
_DOC_TYPE_READ_VERSION = 0x4285
_SEGMENT = 0x18538067
_INFO = 0x1549A966
_TIMESTAMP_SCALE = 0x2AD7B1
_MUXING_APP = 0x4D80
_WRITING_APP = 0x5741
_TRACKS = 0x1654AE6B
_TRACK_ENTRY = 0xAE
_TRACK_NUMBER = 0xD7
_TRACK_UID = 0x73C5
_TRACK_TYPE = 0x83
_FLAG_LACING = 0x9C
_CODEC_ID = 0x86
_VIDEO = 0xE0
_PIXEL_WIDTH = 0xB0
_PIXEL_HEIGHT = 0xBA
_COLOUR_SPACE = 0x2EB524
_CLUSTER = 0x1F43B675
_CLUSTER_TIMESTAMP = 0xE7
_BLOCK_GROUP = 0xA0
_BLOCK = 0xA1
_BLOCK_DURATION = 0x9B

_VIDEO_TRACK_TYPE = 1
_NANOSECONDS_PER_TICK = 1000  # TimestampScale: one tick is 1 µs
_TICKS_PER_SECOND = 1_000_000_000 // _NANOSECONDS_PER_TICK
_RGB24_FOURCC = b"RGB\x18"  # packed 8-bit R, G, B (ffmpeg's raw pixel-format tag for rgb24)
_UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"  # an 8-byte size with all value bits set: "unknown"
_SIZE_MARKER = 0x01 << 56  # the length marker of an 8-byte EBML size
_MAX_SIZE = (1 << 56) - 2  # all ones is reserved for "unknown"
_BLOCK_FLAGS = 0x00  # no lacing; a Block without a ReferenceBlock is a keyframe
_TRACK_NUMBER_VINT = b"\x81"  # track 1 as a 1-byte EBML integer


def increasing_at_stream_resolution(seconds: np.ndarray) -> bool:
    """Whether times [N] (finite) still strictly increase once rounded to the stream's 1 µs tick: two frames on one
    tick cannot both be shown, so such times must be refused before a render starts, not found after it."""
    seconds = np.asarray(seconds, np.float64)
    if seconds.size == 0:
        return True  # no two frames to share a tick (an empty list's other faults are the callers' to name)
    ticks = np.round((seconds - seconds[0]) * _TICKS_PER_SECOND)
    return bool((np.diff(ticks) > 0).all())


def _size(length: int) -> bytes:
    if not 0 <= length <= _MAX_SIZE:
        raise ValueError(f"an EBML element of {length} bytes cannot be written")
    return (_SIZE_MARKER | length).to_bytes(8, "big")


def _element_id(element: int) -> bytes:
    return element.to_bytes((element.bit_length() + 7) // 8, "big")


def _element(element: int, payload: bytes) -> bytes:
    return _element_id(element) + _size(len(payload)) + payload


def _unsigned(element: int, value: int) -> bytes:
    return _element(element, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _text(element: int, value: str) -> bytes:
    return _element(element, value.encode("ascii"))


class MatroskaFrameStream:
    """The bytes of a Matroska stream of ``height x width`` rgb24 frames: :meth:`header` once, then
    :meth:`frame_header` + the frame's bytes per frame (the frame is not copied into a new buffer).

    Times are seconds, finite, >= 0 and strictly increasing after rounding to the 1 µs tick (ffmpeg would
    otherwise reorder or drop frames); durations are > 0. A violation is a ``ValueError``.
    """

    def __init__(self, *, width: int, height: int) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"width and height must be positive, got {width}x{height}")
        self.width = width
        self.height = height
        self.frame_bytes = width * height * 3
        self._last_tick: int | None = None

    def header(self) -> bytes:
        """EBML header, the opening of the (unknown-size) Segment, Info and Tracks."""
        ebml = _element(
            _EBML,
            _unsigned(_EBML_VERSION, 1)
            + _unsigned(_EBML_READ_VERSION, 1)
            + _unsigned(_EBML_MAX_ID_LENGTH, 4)
            + _unsigned(_EBML_MAX_SIZE_LENGTH, 8)
            + _text(_DOC_TYPE, "matroska")
            + _unsigned(_DOC_TYPE_VERSION, 4)
            + _unsigned(_DOC_TYPE_READ_VERSION, 2),
        )
        info = _element(
            _INFO,
            _unsigned(_TIMESTAMP_SCALE, _NANOSECONDS_PER_TICK)
            + _text(_MUXING_APP, "export3d")
            + _text(_WRITING_APP, "export3d"),
        )
        video = _element(
            _VIDEO,
            _unsigned(_PIXEL_WIDTH, self.width)
            + _unsigned(_PIXEL_HEIGHT, self.height)
            + _element(_COLOUR_SPACE, _RGB24_FOURCC),
        )
        track = _element(
            _TRACK_ENTRY,
            _unsigned(_TRACK_NUMBER, 1)
            + _unsigned(_TRACK_UID, 1)
            + _unsigned(_TRACK_TYPE, _VIDEO_TRACK_TYPE)
            + _unsigned(_FLAG_LACING, 0)
            + _text(_CODEC_ID, "V_UNCOMPRESSED")
            + video,
        )
        return ebml + _element_id(_SEGMENT) + _UNKNOWN_SIZE + info + _element(_TRACKS, track)

    def frame_header(self, seconds: float, duration: float) -> bytes:
        """Everything that precedes one frame's ``frame_bytes`` pixel bytes: shown at ``seconds`` for
        ``duration`` seconds. The Block is the BlockGroup's last child, so the pixels end all three elements."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"a frame time must be a finite number >= 0, got {seconds}")
        if not (math.isfinite(duration) and duration > 0):
            raise ValueError(f"a frame duration must be a finite number > 0, got {duration}")
        tick = round(seconds * _TICKS_PER_SECOND)
        if self._last_tick is not None and tick <= self._last_tick:
            raise ValueError(
                f"frame times must increase: {seconds:.6f} s follows {self._last_tick / _TICKS_PER_SECOND:.6f} s"
            )
        self._last_tick = tick
        # Block body: track number, timestamp relative to the cluster (int16), flags, then the frame.
        block_head = _TRACK_NUMBER_VINT + struct.pack(">hB", 0, _BLOCK_FLAGS)
        block = _element_id(_BLOCK) + _size(len(block_head) + self.frame_bytes) + block_head
        group_head = _unsigned(_BLOCK_DURATION, max(1, round(duration * _TICKS_PER_SECOND))) + block
        group = _element_id(_BLOCK_GROUP) + _size(len(group_head) + self.frame_bytes) + group_head
        timestamp = _unsigned(_CLUSTER_TIMESTAMP, tick)
        return _element_id(_CLUSTER) + _size(len(timestamp) + len(group) + self.frame_bytes) + timestamp + group
