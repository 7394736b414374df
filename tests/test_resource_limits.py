"""Resource bombs (issue "Reliability"): small files whose headers declare huge images, frames or arrays.

Each hostile file is a few KB to 1 MB, written here by hand, and would cost gigabytes if decoded. The CLI must
refuse it from the header: exit 2, one ``Error:`` line naming the file and the limit, and a peak memory (of the
CLI process and the ffmpeg it waits for) that stays far below what decoding would take.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import EXAMPLE_PHOTO

# Importing the CLI with torch and a tiny model costs ~0.5 GB; decoding any of these files costs 1.5 to 5 GB.
PEAK_RSS_LIMIT_MB = 1024
TIMEOUT_S = 300

pytestmark = pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4 for the child's peak memory")


# --- hostile files ------------------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_bomb(path: Path, width: int, height: int, *, transparent: bool = False) -> Path:
    """A valid 1-bit PNG of ``width`` x ``height`` black pixels: 17000² is 36 MB of rows, ~35 KB compressed.

    ``transparent`` makes it a palette image whose black is transparent, so a loader composites it as RGBA.
    """
    header = struct.pack(">IIBBBBB", width, height, 1, 3 if transparent else 0, 0, 0, 0)
    rows = b"\x00" * (1 + (width + 7) // 8) * 1024  # filter byte 0 and the packed bits of 1,024 rows
    compressor = zlib.compressobj(9)
    data = [compressor.compress(rows) for _ in range(height // 1024)]
    data += [compressor.compress(rows[: len(rows) // 1024 * (height % 1024)]), compressor.flush()]
    palette = _png_chunk(b"PLTE", b"\x00\x00\x00\xff\xff\xff") + _png_chunk(b"tRNS", b"\x00") if transparent else b""
    chunks = _png_chunk(b"IHDR", header) + palette + _png_chunk(b"IDAT", b"".join(data)) + _png_chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


def _jpeg_bomb(width: int, height: int) -> bytes:
    """A valid grey baseline JPEG of ``width`` x ``height`` in 2 bits an 8x8 block (1 MB for 16000²).

    Its Huffman tables hold one 1-bit code each (DC: no change, AC: end of block), so every block is "00".
    """

    def segment(marker: int, payload: bytes) -> bytes:
        return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload

    one_code = bytes([1] + [0] * 15)  # code counts by length: a single code of length 1
    blocks = -(-width // 8) * -(-height // 8)
    return b"".join(
        [
            b"\xff\xd8",
            segment(0xDB, b"\x00" + b"\x01" * 64),  # quantisation table 0: all ones
            segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),  # one component
            segment(0xC4, b"\x00" + one_code + b"\x00"),  # DC table 0: category 0
            segment(0xC4, b"\x10" + one_code + b"\x00"),  # AC table 0: end of block
            segment(0xDA, b"\x01\x01\x00\x00\x3f\x00"),
            b"\x00" * -(-blocks * 2 // 8),
            b"\xff\xd9",
        ]
    )


def _ebml(element_id: bytes, payload: bytes) -> bytes:
    return element_id + b"\x01" + len(payload).to_bytes(7, "big") + payload  # sizes as 8-byte EBML integers


def _ebml_uint(element_id: bytes, value: int) -> bytes:
    return _ebml(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def write_mkv_bomb(path: Path, width: int, height: int) -> Path:
    """A Matroska file holding one ``width`` x ``height`` MJPEG frame, one second long, written by hand."""
    header = _ebml(
        b"\x1a\x45\xdf\xa3",
        _ebml_uint(b"\x42\x86", 1)  # EBMLVersion
        + _ebml_uint(b"\x42\xf7", 1)  # EBMLReadVersion
        + _ebml_uint(b"\x42\xf2", 4)  # EBMLMaxIDLength
        + _ebml_uint(b"\x42\xf3", 8)  # EBMLMaxSizeLength
        + _ebml(b"\x42\x82", b"matroska")  # DocType
        + _ebml_uint(b"\x42\x87", 4)  # DocTypeVersion
        + _ebml_uint(b"\x42\x85", 2),  # DocTypeReadVersion
    )
    info = _ebml(
        b"\x15\x49\xa9\x66",
        _ebml_uint(b"\x2a\xd7\xb1", 1_000_000)  # TimestampScale: 1 ms
        + _ebml(b"\x44\x89", struct.pack(">d", 1000.0))  # Duration: 1 s
        + _ebml(b"\x4d\x80", b"test")  # MuxingApp
        + _ebml(b"\x57\x41", b"test"),  # WritingApp
    )
    video = _ebml(b"\xe0", _ebml_uint(b"\xb0", width) + _ebml_uint(b"\xba", height))
    track = _ebml(
        b"\xae",
        _ebml_uint(b"\xd7", 1)  # TrackNumber
        + _ebml_uint(b"\x73\xc5", 1)  # TrackUID
        + _ebml_uint(b"\x83", 1)  # TrackType: video
        + _ebml(b"\x86", b"V_MJPEG")
        + _ebml_uint(b"\x23\xe3\x83", 1_000_000_000)  # DefaultDuration: 1 s a frame
        + video,
    )
    block = b"\x81" + b"\x00\x00" + b"\x80" + _jpeg_bomb(width, height)  # track 1, time 0, keyframe
    cluster = _ebml(b"\x1f\x43\xb6\x75", _ebml_uint(b"\xe7", 0) + _ebml(b"\xa3", block))
    segment = _ebml(b"\x18\x53\x80\x67", info + _ebml(b"\x16\x54\xae\x6b", track) + cluster)
    path.write_bytes(header + segment)
    return path


def _small_motion_members() -> dict[str, np.ndarray]:
    """Every array of a 7-frame motion file but ``expression``, which each bomb supplies."""
    return {
        "version": np.int64(1),
        "camera": np.zeros((7, 25), np.float32),
        "valid": np.ones(7, bool),
        "fps": np.float64(25.0),
        "source": np.array(""),
    }


def write_npz_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    """A motion file whose ``expression.npy`` header declares ``shape`` float32 but holds 4 KB of data."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in _small_motion_members().items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
        with archive.open("expression.npy", "w") as member:
            np.lib.format.write_array_header_2_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
            member.write(bytes(4096))
    return path


def write_npz_inflating(path: Path, frames: int) -> Path:
    """A compressed motion file (as np.savez_compressed writes) whose ``expression`` [frames, 52] float32 zeros
    really inflate: 1,100,000 frames are 229 MB in 0.2 MB. Streamed in 4 MB pieces, so writing never holds it."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, array in _small_motion_members().items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
        with archive.open("expression.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(
                member, {"descr": "<f4", "fortran_order": False, "shape": (frames, 52)}
            )
            remaining = frames * 52 * 4
            piece = bytes(4 << 20)
            while remaining:
                member.write(piece[: min(remaining, len(piece))])
                remaining -= min(remaining, len(piece))
    return path


# --- running the CLI ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    code: int
    stderr: str
    peak_rss_mb: float


# Runs argv[2:] and writes its peak RSS (KiB) to the file argv[1]; exits with its exit code.
_MEASURING_PARENT = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(*args: object, timeout: float = TIMEOUT_S) -> Run:
    """The CLI in a fresh process: exit code, stderr, and its peak RSS (with the children it waited for).

    Through a small parent process: Linux carries a process's peak RSS across fork and exec, so a CLI forked
    straight from the test process would report that process's size (2.5 GB late in the full suite); forked from
    a fresh interpreter it reports its own.
    """
    env = {key: value for key, value in os.environ.items() if key != "EXPORT3D_DEBUG"}
    with tempfile.TemporaryFile() as stderr, tempfile.NamedTemporaryFile("r") as peak:
        command = [sys.executable, "-c", _MEASURING_PARENT, peak.name, sys.executable, "-m", "export3d_cli"]
        process = subprocess.Popen(
            [*command, *map(str, args)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            start_new_session=True,  # so a hung CLI can be killed with its parent
        )
        try:
            process.wait(timeout=timeout)  # a regression that hangs fails instead of blocking
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        stderr.seek(0)
        text = stderr.read().decode("utf-8", "replace")
        kib = peak.read().strip()
    return Run(process.returncode, text, int(kib) / 1024 if kib else float("nan"))  # ru_maxrss is in KiB on Linux


def assert_refused(run: Run, *, names: str) -> None:
    """Exit 2, one ``Error:`` line containing ``names``, no traceback, and a low peak memory."""
    errors = [line for line in run.stderr.splitlines() if line.startswith("Error:")]
    assert run.code == 2 and len(errors) == 1 and names in errors[0], run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    assert run.peak_rss_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {run.peak_rss_mb:.0f} MB\n{run.stderr}"


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    from export3d_cli.config import preset
    from export3d_cli.models.export3d import Export3D

    return Export3D(preset("tiny")).save_pretrained(tmp_path_factory.mktemp("weights") / "tiny")


# --- the cases ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("transparent", [False, True], ids=["grey", "transparent"])
def test_a_huge_source_photo_is_refused_from_its_header(tmp_path, weights, transparent):
    from export3d_cli.media.image_io import MAX_PIXELS

    bomb = write_png_bomb(tmp_path / "bomb.png", 17000, 17000, transparent=transparent)  # 289 MP in 35 KB
    run = run_measured("novel-view", bomb, "--yaw", 10, "-o", tmp_path / "out.png", "--weights", weights)
    # Above twice the limit Pillow itself refuses the header, before the size reaches us.
    assert_refused(run, names=f"bomb.png: image is too large (over {2 * MAX_PIXELS / 1e6:.1f} megapixels; the limit")


def test_a_source_photo_just_over_the_limit_is_refused_with_its_size(tmp_path, weights, driving_video):
    bomb = write_png_bomb(tmp_path / "big.png", 8193, 8192)
    run = run_measured("animate", bomb, driving_video.path, "-o", tmp_path / "out.mp4", "--weights", weights)
    assert_refused(run, names="big.png: image is too large (8193x8192 = 67.1 megapixels; the limit is 67.1")


@pytest.fixture
def frame_bomb(tmp_path) -> Path:
    return write_mkv_bomb(tmp_path / "bomb.mkv", 16000, 16000)  # one 256 MP frame in 1 MB


FRAME_BOMB_ERROR = "bomb.mkv: video frames are too large (16000x16000 = 256.0 megapixels; the limit is 40.0"


def test_a_driving_video_of_huge_frames_is_refused_before_a_frame_is_decoded(tmp_path, weights, frame_bomb):
    run = run_measured("animate", EXAMPLE_PHOTO, frame_bomb, "-o", tmp_path / "out.mp4", "--weights", weights)
    assert_refused(run, names=FRAME_BOMB_ERROR)


def test_extract_refuses_a_video_of_huge_frames(tmp_path, frame_bomb):
    assert_refused(run_measured("extract", frame_bomb, "-o", tmp_path / "m.npz"), names=FRAME_BOMB_ERROR)
    assert not (tmp_path / "m.npz").exists()


def test_a_motion_file_declaring_a_huge_array_is_refused_before_loading_it(tmp_path, weights):
    bomb = write_npz_declaring(tmp_path / "bomb.npz", (1_000_000_000, 52))  # 208 GB of float32 in 1 KB
    run = run_measured("animate", EXAMPLE_PHOTO, bomb, "-o", tmp_path / "out.mp4", "--weights", weights)
    assert_refused(
        run,
        names="bomb.npz: array 'expression' declares [1000000000, 52] float32 = 208.0 GB, over the 208.0 MB limit "
        "for it (a motion file holds at most 1,000,000 frames)",
    )


def test_a_compressed_motion_file_that_inflates_past_the_limit_is_refused(tmp_path, weights):
    bomb = write_npz_inflating(tmp_path / "bomb.npz", 1_100_000)
    run = run_measured("animate", EXAMPLE_PHOTO, bomb, "-o", tmp_path / "out.mp4", "--weights", weights)
    assert_refused(run, names="bomb.npz: array 'expression' unpacks to 228.8 MB, over the 208.0 MB limit")


def test_novel_view_refuses_a_huge_expression_source_too(tmp_path, weights):
    bomb = write_npz_declaring(tmp_path / "bomb.npz", (2**40, 52))
    options = ("--yaw", 5, "--expression-from", bomb, "--weights", weights)
    run = run_measured("novel-view", EXAMPLE_PHOTO, *options, "-o", tmp_path / "o.png")
    assert_refused(run, names="bomb.npz: array 'expression' declares [1099511627776, 52] float32")


def test_a_motion_array_with_far_more_data_than_its_shape_needs_is_refused(tmp_path, weights):
    bomb = tmp_path / "padded.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in _small_motion_members().items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
        with archive.open("expression.npy", "w") as member:
            np.lib.format.write_array(member, np.zeros((7, 52), np.float32))
            member.write(bytes(50_000_000))  # trailing data np.load would never read: 50 MB in 50 KB
    run = run_measured("animate", EXAMPLE_PHOTO, bomb, "-o", tmp_path / "out.mp4", "--weights", weights)
    assert_refused(run, names="padded.npz: array 'expression' unpacks to 50.0 MB, far more than its [7, 52] float32")


# --- dataset params (read by train and evaluate for every clip) ---------------------------------------------------


def test_a_clip_params_file_declaring_huge_landmarks_is_refused_before_loading_it(tmp_path):
    from export3d_cli.data.dataset_layout import PARAMS_NAME, clip_dir, read_clip_params
    from export3d_cli.errors import InputError

    params = clip_dir(tmp_path, "clip") / PARAMS_NAME
    params.parent.mkdir(parents=True)
    with zipfile.ZipFile(params, "w") as archive:
        for name, array in {"expression": np.zeros((2, 52), np.float32), "valid": np.ones(2, bool)}.items():
            with archive.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
        with archive.open("landmarks.npy", "w") as member:
            header = {"descr": "<f4", "fortran_order": False, "shape": (10**9, 478, 2)}  # 3.8 TB
            np.lib.format.write_array_header_2_0(member, header)
    with pytest.raises(InputError, match=r"'landmarks' declares \[1000000000, 478, 2\] float32 = 3824\.0 GB, over"):
        read_clip_params(tmp_path, "clip")


def test_a_lone_npy_bomb_named_params_npz_is_refused_without_reading_it(tmp_path):
    from export3d_cli.data.dataset_layout import PARAMS_NAME, clip_dir, read_clip_params
    from export3d_cli.errors import InputError

    params = clip_dir(tmp_path, "clip") / PARAMS_NAME
    params.parent.mkdir(parents=True)
    with params.open("wb") as handle:  # np.load would allocate the whole declared array for a lone .npy
        np.lib.format.write_array_header_2_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (2**40,)})
    with pytest.raises(InputError, match=r"params\.npz: not an \.npz archive \(holds a single array\)"):
        read_clip_params(tmp_path, "clip")
