"""Motion files: exact round trip, atomic writes, and every unreadable file as a one-line InputError."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from export3d_cli.errors import InputError
from export3d_cli.face.blendshapes import BLENDSHAPE_NAMES
from export3d_cli.face.motion_file import (
    MOTION_FORMAT_VERSION,
    Motion,
    is_motion_file,
    load_motion,
    save_motion,
)


def make_motion(frames: int = 7, seed: int = 0) -> Motion:
    rng = np.random.default_rng(seed)
    valid = np.ones(frames, dtype=bool)
    valid[frames // 2] = False
    return Motion(
        expression=rng.random((frames, 52), dtype=np.float32),
        camera=rng.normal(size=(frames, 25)).astype(np.float32),
        valid=valid,
        fps=29.97,
        source="clips/driver video.mp4",
    )


def motion_arrays(motion: Motion | None = None, **overrides) -> dict[str, np.ndarray]:
    """The arrays of a valid motion file, with some replaced (or removed when the override is None)."""
    motion = motion or make_motion()
    arrays = {
        "version": np.int64(MOTION_FORMAT_VERSION),
        "expression": motion.expression,
        "camera": motion.camera,
        "valid": motion.valid,
        "fps": np.float64(motion.fps),
        "source": np.array(motion.source),
        "expression_names": np.array(BLENDSHAPE_NAMES),
    }
    arrays.update(overrides)
    return {name: value for name, value in arrays.items() if value is not None}


def write_npz(path: Path, **overrides) -> Path:
    np.savez(path, **motion_arrays(**overrides))
    return path


def assert_load_fails(path: Path, match: str | None = None) -> InputError:
    with pytest.raises(InputError) as error:
        load_motion(path)
    message = str(error.value)
    assert str(path) in message
    assert "\n" not in message, "errors are a single line"
    if match is not None:
        assert match in message
    return error.value


# --- round trip and atomic writes ---


def test_save_load_round_trip_is_exact(tmp_path):
    motion = make_motion()
    written = save_motion(tmp_path / "motion.npz", motion)
    assert written == tmp_path / "motion.npz"
    loaded = load_motion(written)
    np.testing.assert_array_equal(loaded.expression, motion.expression)
    np.testing.assert_array_equal(loaded.camera, motion.camera)
    np.testing.assert_array_equal(loaded.valid, motion.valid)
    assert loaded.expression.dtype == np.float32
    assert loaded.camera.dtype == np.float32
    assert loaded.valid.dtype == bool
    assert loaded.fps == motion.fps
    assert loaded.source == motion.source
    assert loaded.frames == 7


def test_saved_file_holds_the_documented_keys(tmp_path):
    path = save_motion(tmp_path / "m.npz", make_motion(frames=3))
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"version", "expression", "camera", "valid", "fps", "source", "expression_names"}
        assert int(data["version"]) == MOTION_FORMAT_VERSION
        assert tuple(data["expression_names"].tolist()) == BLENDSHAPE_NAMES
        assert data["fps"].dtype == np.float64


def test_save_keeps_the_exact_name_and_creates_folders(tmp_path):
    path = save_motion(tmp_path / "deep" / "folder" / "driving.motion", make_motion())
    assert sorted(os.listdir(path.parent)) == ["driving.motion"], "no .npz suffix appended, no temporary left"
    assert load_motion(path).frames == 7


def test_failed_save_leaves_the_old_file_intact_and_no_temporaries(tmp_path, monkeypatch):
    path = save_motion(tmp_path / "motion.npz", make_motion(seed=1))
    before = path.read_bytes()

    def failing_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        save_motion(path, make_motion(seed=2))
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["motion.npz"]


def test_failed_first_save_leaves_nothing(tmp_path, monkeypatch):
    def failing_savez(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(KeyboardInterrupt):
        save_motion(tmp_path / "motion.npz", make_motion())
    assert os.listdir(tmp_path) == []


def test_motion_rejects_inconsistent_shapes():
    motion = make_motion(frames=4)
    with pytest.raises(ValueError, match="disagree"):
        Motion(motion.expression[:3], motion.camera, motion.valid, 25.0, "x")
    with pytest.raises(ValueError, match="disagree"):
        Motion(motion.expression, motion.camera[:, :16], motion.valid, 25.0, "x")


def test_frame_times_round_trip_and_stay_absent_for_a_constant_rate(tmp_path):
    times = np.array([0.0417, 0.08, 0.2, 0.21, 0.5, 0.533, 0.6])
    timed = Motion(**{**make_motion().__dict__, "frame_times": times})
    loaded = load_motion(save_motion(tmp_path / "vfr.npz", timed))
    np.testing.assert_array_equal(loaded.frame_times, times)
    assert loaded.frame_times.dtype == np.float64
    np.testing.assert_array_equal(loaded.first(3).frame_times, times[:3])
    assert loaded.first(3).frames == 3
    constant = save_motion(tmp_path / "cfr.npz", make_motion())
    with np.load(constant, allow_pickle=False) as data:
        assert "frame_times" not in data.files  # older readers see exactly the format they know
    assert load_motion(constant).frame_times is None


def test_motion_rejects_frame_times_of_another_length():
    motion = make_motion(frames=4)
    with pytest.raises(ValueError, match="frame_times"):
        Motion(motion.expression, motion.camera, motion.valid, 25.0, "x", np.arange(3.0))


@pytest.mark.parametrize(
    "times",
    [
        np.arange(6.0),
        np.array([0, 1, 2, 2, 3, 4, 5.0]),
        np.array([0, 1, 2, 2 + 2e-7, 3, 4, 5.0]),  # increasing, but on one 1 µs tick of the video stream
        np.array([0, 1, 2, np.nan, 4, 5, 6]),
        np.full((7, 2), 1.0),
    ],
    ids=["too-few", "repeated", "same-microsecond", "nan", "2-d"],
)
def test_bad_frame_times_are_input_errors(tmp_path, times):
    assert_load_fails(write_npz(tmp_path / "motion.npz", frame_times=times), match="frame_times")


# --- loading errors ---


def test_missing_file_is_an_input_error(tmp_path):
    assert_load_fails(tmp_path / "missing.npz", match="missing.npz: no such file")
    assert_load_fails(tmp_path, match="is a directory")  # a folder is not a motion file


@pytest.mark.parametrize("content", [b"", b"hello, not a zip", b"PK\x03\x04 truncated"])
def test_not_a_zip_is_an_input_error(tmp_path, content):
    path = tmp_path / "motion.npz"
    path.write_bytes(content)
    assert_load_fails(path)


def test_a_plain_npy_file_is_an_input_error(tmp_path):
    path = tmp_path / "motion.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros((3, 52), dtype=np.float32))
    assert_load_fails(path)


def test_truncated_motion_file_is_an_input_error(tmp_path):
    good = save_motion(tmp_path / "good.npz", make_motion())
    path = tmp_path / "truncated.npz"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert_load_fails(path)


def test_zip_without_our_keys_is_an_input_error(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3))
    assert_load_fails(path, match="missing version, expression, camera, valid, fps, source")
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert_load_fails(tmp_path / "plain.zip", match="missing")


@pytest.mark.parametrize("key", ["version", "expression", "camera", "valid", "fps", "source"])
def test_each_required_key_is_checked(tmp_path, key):
    path = write_npz(tmp_path / "motion.npz", **{key: None})
    error = assert_load_fails(path, match="missing")
    assert key in str(error)


@pytest.mark.parametrize(
    "overrides",
    [
        {"expression": np.zeros((7, 51), dtype=np.float32)},
        {"expression": np.zeros((6, 52), dtype=np.float32)},
        {"camera": np.zeros((7, 16), dtype=np.float32)},
        {"camera": np.zeros((7, 25, 1), dtype=np.float32)},
        {"valid": np.ones((7, 1), dtype=bool)},
        {"valid": np.array(True)},
        {
            "expression": np.zeros((0, 52), dtype=np.float32),
            "camera": np.zeros((0, 25), dtype=np.float32),
            "valid": np.zeros(0, dtype=bool),
        },
    ],
    ids=["expr-dim", "expr-frames", "camera-dim", "camera-3d", "valid-2d", "valid-scalar", "empty"],
)
def test_wrong_shapes_are_input_errors(tmp_path, overrides):
    assert_load_fails(write_npz(tmp_path / "motion.npz", **overrides), match="inconsistent motion file")


@pytest.mark.parametrize(
    "overrides",
    [
        {"expression": np.where(np.eye(7, 52, dtype=bool), np.nan, 0.5).astype(np.float32)},
        {"camera": np.full((7, 25), np.inf, dtype=np.float32)},
    ],
    ids=["nan-expression", "inf-camera"],
)
def test_non_finite_values_are_input_errors(tmp_path, overrides):
    assert_load_fails(write_npz(tmp_path / "motion.npz", **overrides), match="non-finite")


def test_newer_version_is_an_input_error(tmp_path):
    error = assert_load_fails(write_npz(tmp_path / "motion.npz", version=np.int64(99)), match="version 99")
    assert "upgrade" in str(error)


def test_older_version_is_accepted(tmp_path):
    assert load_motion(write_npz(tmp_path / "motion.npz", version=np.int64(0))).frames == 7


@pytest.mark.parametrize(
    "overrides",
    [
        {"version": np.array("one")},
        {"version": np.array([1, 1])},
        {"expression": np.full((7, 52), "x")},
        {"fps": np.array("fast")},
    ],
    ids=["version-text", "version-vector", "expression-text", "fps-text"],
)
def test_wrong_types_are_input_errors(tmp_path, overrides):
    assert_load_fails(write_npz(tmp_path / "motion.npz", **overrides))


class _Exploit:
    """Unpickling this creates a folder: proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.mark.parametrize("key", ["source", "expression", "version"])
def test_object_arrays_are_never_unpickled(tmp_path, key):
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _Exploit(marker)
    path = write_npz(tmp_path / "motion.npz", **{key: payload})
    assert_load_fails(path)
    assert not marker.exists(), "load_motion executed pickled code"
    # The payload is live: loading it with pickling allowed would have run it.
    with np.load(path, allow_pickle=True) as data:
        data[key]
    assert marker.exists()


def test_unknown_keys_are_ignored(tmp_path):
    path = write_npz(tmp_path / "motion.npz", future_feature=np.arange(5), notes=np.array("hello"))
    loaded = load_motion(path)
    np.testing.assert_array_equal(loaded.expression, make_motion().expression)


def test_integer_valid_flags_are_read_as_booleans(tmp_path):
    loaded = load_motion(write_npz(tmp_path / "motion.npz", valid=np.array([1, 0, 1, 1, 0, 1, 1], dtype=np.int8)))
    assert loaded.valid.dtype == bool
    assert loaded.valid.tolist() == [True, False, True, True, False, True, True]


def test_compressed_motion_files_are_readable(tmp_path):
    path = tmp_path / "motion.npz"
    np.savez_compressed(path, **motion_arrays())
    np.testing.assert_array_equal(load_motion(path).camera, make_motion().camera)


def corrupt_member(path: Path, member: str) -> None:
    """Flip bytes inside a zip member's stored data (not its header)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for offset in range(start + 20, start + min(60, info.compress_size)):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def test_corrupt_stored_member_is_an_input_error(tmp_path):
    path = save_motion(tmp_path / "motion.npz", make_motion())
    corrupt_member(path, "expression.npy")
    assert_load_fails(path)


def test_corrupt_compressed_member_is_an_input_error(tmp_path):
    path = tmp_path / "motion.npz"
    np.savez_compressed(path, **motion_arrays())
    corrupt_member(path, "expression.npy")
    assert_load_fails(path)


# --- is_motion_file ---


def test_is_motion_file_recognises_motion_files_only(tmp_path):
    assert is_motion_file(save_motion(tmp_path / "motion.npz", make_motion()))
    assert is_motion_file(write_npz(tmp_path / "extra.npz", extra=np.zeros(2)))
    assert not is_motion_file(write_npz(tmp_path / "no_camera.npz", camera=None))
    np.savez(tmp_path / "weights.npz", weights=np.zeros(3))
    assert not is_motion_file(tmp_path / "weights.npz")
    (tmp_path / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    assert not is_motion_file(tmp_path / "video.mp4")
    assert not is_motion_file(tmp_path / "missing.npz")
    assert not is_motion_file(tmp_path)
    assert is_motion_file(str(tmp_path / "motion.npz")), "accepts str paths"


@pytest.mark.parametrize("fps", [np.inf, np.nan, 1e-300, 1e300, 0.0, -25.0])
def test_a_frame_rate_no_video_can_have_is_refused(tmp_path, fps):
    assert_load_fails(write_npz(tmp_path / "motion.npz", fps=np.float64(fps)), match="fps")
