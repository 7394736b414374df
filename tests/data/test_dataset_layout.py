"""Dataset layout: exact round trips, byte determinism, atomic clip writes, resumability, strict reading."""

import json
import os
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

from export3d_cli.data import (
    FORMAT_NAME,
    MANIFEST_NAME,
    ClipParams,
    ClipRecord,
    ClipWriter,
    Manifest,
    clip_dir,
    frame_path,
    is_clip_complete,
    read_clip_params,
    read_frame,
    read_manifest,
    split_for_identity,
    write_manifest,
)
from export3d_cli.errors import EXIT_USAGE, InputError

R = 16


def _params(num_frames, seed=0, **extra):
    rng = np.random.default_rng(seed)
    return ClipParams(
        expression=rng.random((num_frames, 52), dtype=np.float32),
        camera=rng.standard_normal((num_frames, 25), dtype=np.float32),
        landmarks=rng.random((num_frames, 478, 2), dtype=np.float32) * R,
        valid=rng.random(num_frames) > 0.2,
        extra=extra,
    )


def _frames(num_frames, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (num_frames, R, R, 3), dtype=np.uint8)


def _write_clip(root, clip_id, frames, params):
    with ClipWriter(root, clip_id, R) as writer:
        for frame in frames:
            writer.add_frame(frame)
        return writer.commit(params)


def _write_dataset(root):
    """Two clips, one with synthetic-style extra arrays; returns what was written."""
    clips = {
        "clip-b": (_frames(3, seed=1), _params(3, seed=1)),
        "clip-a": (
            _frames(4, seed=2),
            _params(
                4,
                seed=2,
                true_expression=np.arange(4 * 52, dtype=np.float32).reshape(4, 52),
                identity_id=np.array(7, dtype=np.int64),
                cross_identity_frames=_frames(8, seed=3).reshape(2, 4, R, R, 3),
            ),
        ),
    }
    for clip_id, (frames, params) in clips.items():
        assert _write_clip(root, clip_id, frames, params) == len(frames)
    manifest = Manifest(
        resolution=R,
        fps=25.0,
        expression_kind="mediapipe-blendshapes",
        expression_dim=52,
        generator="test",
        clips=(
            ClipRecord("clip-b", "person2", "test", 3, 2, source="videos/b.mp4", extra={"z": 1, "a": [1, {"y": 2}]}),
            ClipRecord("clip-a", "person1", "train", 4, 4),
        ),
    )
    write_manifest(root, manifest)
    return clips, manifest


def _tree(root):
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def test_dataset_round_trip_is_exact(tmp_path):
    clips, manifest = _write_dataset(tmp_path)
    assert read_manifest(tmp_path) == manifest
    assert [clip.id for clip in manifest.clips] == ["clip-a", "clip-b"]  # sorted by id
    assert [clip.id for clip in manifest.split("train")] == ["clip-a"]
    for clip_id, (frames, params) in clips.items():
        assert is_clip_complete(tmp_path, clip_id)
        for index, frame in enumerate(frames):
            np.testing.assert_array_equal(read_frame(tmp_path, clip_id, index), frame)
        loaded = read_clip_params(tmp_path, clip_id)
        written, restored = params.arrays(), loaded.arrays()
        assert written.keys() == restored.keys()
        for name, array in written.items():
            assert restored[name].dtype == array.dtype and restored[name].shape == array.shape, name
            np.testing.assert_array_equal(restored[name], array, err_msg=name)
    assert sorted(read_clip_params(tmp_path, "clip-a").extra) == [
        "cross_identity_frames",
        "identity_id",
        "true_expression",
    ]
    # Only finished clips and the manifest: no work folders or temporary files left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clips", MANIFEST_NAME]
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == ["clip-a", "clip-b"]


def test_manifest_json_is_stable_and_round_trips(tmp_path):
    _, manifest = _write_dataset(tmp_path)
    data = json.loads((tmp_path / MANIFEST_NAME).read_text())
    assert data["format"] == FORMAT_NAME and data["version"] == 1
    assert data["expression"] == {"kind": "mediapipe-blendshapes", "dim": 52}
    assert list(data["clips"][1]["extra"]) == ["a", "z"]  # sorted whatever the insertion order
    assert Manifest.from_json(manifest.to_json(), path="m.json") == manifest
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json())), path="m.json").to_json() == data


def test_output_is_byte_identical_when_written_twice(tmp_path):
    _write_dataset(tmp_path / "one")
    _write_dataset(tmp_path / "two")
    one, two = _tree(tmp_path / "one"), _tree(tmp_path / "two")
    assert len(one) == 1 + 2 * 2 + 3 + 4  # manifest, params and marker per clip, frames
    assert one == two


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_interrupted_writer_leaves_nothing(tmp_path, error):
    with pytest.raises(error), ClipWriter(tmp_path, "clip", R) as writer:
        writer.add_frame(_frames(1)[0])
        raise error
    assert list((tmp_path / "clips").iterdir()) == []


def test_leaving_without_commit_discards_and_mismatched_commit_fails(tmp_path):
    with ClipWriter(tmp_path, "skipped", R) as writer:
        writer.add_frame(_frames(1)[0])
    with pytest.raises(ValueError, match="params have 2 frames, wrote 1"), ClipWriter(tmp_path, "short", R) as writer:
        writer.add_frame(_frames(1)[0])
        writer.commit(_params(2))
    assert list((tmp_path / "clips").iterdir()) == []


def test_writer_rejects_frames_of_wrong_shape_or_dtype(tmp_path):
    with ClipWriter(tmp_path, "clip", R) as writer:
        for bad in (np.zeros((R, R + 1, 3), np.uint8), np.zeros((R, R, 4), np.uint8), np.zeros((R, R, 3), np.float32)):
            with pytest.raises(ValueError, match="frame must be uint8"):
                writer.add_frame(bad)
        assert writer.num_frames == 0


def test_incomplete_clips_are_detected_and_replaced(tmp_path):
    frames, params = _frames(3), _params(3)
    _write_clip(tmp_path, "clip", frames, params)
    directory = clip_dir(tmp_path, "clip")
    marker = directory / ".complete"
    marker.unlink()
    assert not is_clip_complete(tmp_path, "clip")
    # A writer replaces the incomplete clip.
    _write_clip(tmp_path, "clip", frames, params)
    assert is_clip_complete(tmp_path, "clip")
    frame_path(tmp_path, "clip", 2).unlink()
    assert not is_clip_complete(tmp_path, "clip")
    _write_clip(tmp_path, "clip", frames, params)
    (directory / "params.npz").unlink()
    assert not is_clip_complete(tmp_path, "clip")
    assert not is_clip_complete(tmp_path, "never-written")


def test_complete_clip_is_replaced_only_with_overwrite(tmp_path):
    _write_clip(tmp_path, "clip", _frames(3), _params(3))
    with pytest.raises(FileExistsError, match="already complete"):
        ClipWriter(tmp_path, "clip", R)
    with ClipWriter(tmp_path, "clip", R, overwrite=True) as writer:
        writer.add_frame(_frames(1, seed=5)[0])
        writer.commit(_params(1))
    assert is_clip_complete(tmp_path, "clip") and read_clip_params(tmp_path, "clip").num_frames == 1
    np.testing.assert_array_equal(read_frame(tmp_path, "clip", 0), _frames(1, seed=5)[0])
    assert sorted(p.name for p in (tmp_path / "clips").iterdir()) == ["clip"]


def test_work_folders_of_a_killed_writer_are_cleaned_up(tmp_path):
    clips = tmp_path / "clips"
    (clips / ".clip.partial-0123abcd" / "frames").mkdir(parents=True)
    (clips / ".clip.old-89abcdef").mkdir()
    (clips / ".clip2.partial-0123abcd").mkdir()  # another clip's writer may still be running
    _write_clip(tmp_path, "clip", _frames(1), _params(1))
    assert sorted(p.name for p in clips.iterdir()) == [".clip2.partial-0123abcd", "clip"]


def test_clip_folders_follow_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        _write_clip(tmp_path, "clip", _frames(1), _params(1))
    finally:
        os.umask(previous)
    assert (clip_dir(tmp_path, "clip").stat().st_mode & 0o777) == 0o755


@pytest.mark.parametrize("clip_id", ["", "../escape", "a/b", ".hidden", "-dash", "x" * 129, "with space"])
def test_unsafe_clip_ids_are_rejected(tmp_path, clip_id):
    with pytest.raises(ValueError, match="invalid clip id"):
        clip_dir(tmp_path, clip_id)
    with pytest.raises(ValueError, match="invalid clip id"):
        ClipRecord(clip_id, "person", "train", 1, 1)


def test_split_for_identity_is_deterministic_and_keeps_identities_together():
    identities = [f"person{i}" for i in range(1000)]
    splits = [split_for_identity(identity, 0.1) for identity in identities]
    assert splits == [split_for_identity(identity, 0.1) for identity in identities]
    assert 0.07 <= splits.count("test") / len(identities) <= 0.13
    assert splits != [split_for_identity(identity, 0.1, seed=1) for identity in identities]
    assert {split_for_identity(identity, 0.0) for identity in identities} == {"train"}
    assert {split_for_identity(identity, 1.0) for identity in identities} == {"test"}
    # Pinned: a stable hash (not Python's per-process salted hash()), so splits never change between runs.
    pinned = "".join("T" if split_for_identity(f"person{i}", 0.5) == "test" else "." for i in range(16))
    assert pinned == ".......TT...TTT."
    records = [
        ClipRecord(f"{identity}-{take}", identity, split_for_identity(identity, 0.3), 1, 1)
        for identity in identities[:50]
        for take in range(3)
    ]
    manifest = Manifest(resolution=R, fps=25.0, expression_kind="k", expression_dim=52, clips=tuple(records))
    train = {clip.identity for clip in manifest.split("train")}
    test = {clip.identity for clip in manifest.split("test")}
    assert train and test and not train & test
    with pytest.raises(ValueError):
        split_for_identity("person", 1.5)


def _valid_manifest_json():
    return Manifest(
        resolution=R, fps=25.0, expression_kind="k", expression_dim=52, clips=(ClipRecord("a", "p", "train", 2, 2),)
    ).to_json()


def _with(change):
    data = _valid_manifest_json()
    change(data)
    return json.dumps(data)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "not an export3d dataset (no manifest.json)"),
        ("{not json", "malformed JSON at line 1"),
        ("[1, 2]", "expected a JSON object, got a list"),
        (_with(lambda d: d.update(format="something-else")), "not an export3d dataset manifest"),
        (_with(lambda d: d.update(version=7)), "unsupported version 7"),
        (_with(lambda d: d.pop("resolution")), "missing field 'resolution'"),
        (_with(lambda d: d.update(fps="25")), "'fps' must be a number, got a string"),
        (_with(lambda d: d.update(resolution=True)), "'resolution' must be an integer, got a boolean"),
        (_with(lambda d: d["clips"][0].pop("identity")), "clips[0]: missing field 'identity'"),
        (_with(lambda d: d["clips"][0].update(split="val")), "split must be one of train, test"),
        (_with(lambda d: d["clips"][0].update(valid_frames=3)), "valid_frames must be in [0, 2]"),
        (_with(lambda d: d["clips"][0].update(id="../x")), "invalid clip id"),
        (_with(lambda d: d["clips"].append(d["clips"][0])), "clip id 'a' appears twice"),
        (_with(lambda d: d["expression"].pop("dim")), "expression: missing field 'dim'"),
    ],
)
def test_bad_manifests_give_one_line_naming_the_file(tmp_path, text, expected):
    if text is not None:
        (tmp_path / MANIFEST_NAME).write_text(text)
    with pytest.raises(InputError) as info:
        read_manifest(tmp_path)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == EXIT_USAGE
    assert message.startswith(str(tmp_path if text is None else tmp_path / MANIFEST_NAME) + ": ")
    assert expected in message


def test_clip_params_validation():
    good = _params(3)
    cases = {
        "camera must have shape [3, 25]": dict(camera=np.zeros((3, 24), np.float32)),
        "landmarks must have shape [3, 478, 2]": dict(landmarks=np.zeros((2, 478, 2), np.float32)),
        "valid must have shape [3]": dict(valid=np.ones(4, bool)),
        "valid must be bool": dict(valid=np.ones(3, np.uint8)),
        "expression must be float32": dict(expression=np.zeros((3, 52))),
        "expression must be [T, E] with T, E >= 1": dict(expression=np.zeros((3, 0), np.float32)),
        "must be an identifier other than": dict(extra={"camera": np.zeros(1)}),
        "non-object dtype": dict(extra={"names": np.array(["a", None], dtype=object)}),
    }
    for message, change in cases.items():
        fields = dict(expression=good.expression, camera=good.camera, landmarks=good.landmarks, valid=good.valid)
        with pytest.raises(ValueError, match=re.escape(message)):
            ClipParams(**{**fields, **change})
    assert ClipParams(good.expression[:, :8], good.camera, good.landmarks, good.valid).expression.shape == (3, 8)


def _read_params_error(root):
    with pytest.raises(InputError) as info:
        read_clip_params(root, "clip")
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(clip_dir(root, "clip") / "params.npz") + ": ")
    return message


def test_params_are_never_unpickled(tmp_path):
    _write_clip(tmp_path, "clip", _frames(2), _params(2))
    path = clip_dir(tmp_path, "clip") / "params.npz"
    arrays = dict(read_clip_params(tmp_path, "clip").arrays())
    np.savez(path, **arrays, payload=np.array([{"pickled": True}], dtype=object))
    assert "corrupt params file" in _read_params_error(tmp_path)


def test_bad_params_files_give_one_line_naming_the_file(tmp_path):
    assert "no such file" in _read_params_error(tmp_path)
    _write_clip(tmp_path, "clip", _frames(2), _params(2))
    path = clip_dir(tmp_path, "clip") / "params.npz"
    arrays = read_clip_params(tmp_path, "clip").arrays()
    np.savez(path, **{name: array for name, array in arrays.items() if name != "valid"})
    assert "missing array(s) valid" in _read_params_error(tmp_path)
    np.savez(path, **{**arrays, "camera": arrays["camera"][:, :24]})
    assert "camera must have shape [2, 25]" in _read_params_error(tmp_path)
    path.write_bytes(b"PK\x03\x04 truncated")
    assert "corrupt params file" in _read_params_error(tmp_path)
    np.save(path.with_suffix(".npy"), arrays["camera"])
    path.with_suffix(".npy").replace(path)
    assert "not an .npz archive" in _read_params_error(tmp_path)
    # Unknown arrays from another writer are kept, not rejected.
    np.savez(path, **arrays, future_key=np.zeros(3, np.int16))
    assert read_clip_params(tmp_path, "clip").extra["future_key"].dtype == np.int16


def test_npz_members_have_a_fixed_timestamp(tmp_path):
    _write_clip(tmp_path, "clip", _frames(1), _params(1, extra_array=np.ones(2, np.float32)))
    with zipfile.ZipFile(clip_dir(tmp_path, "clip") / "params.npz") as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == sorted(info.filename for info in infos)
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}


def test_read_frame_errors_name_the_file(tmp_path):
    _write_clip(tmp_path, "clip", _frames(1), _params(1))
    with pytest.raises(InputError, match=r"000001\.png: no such frame"):
        read_frame(tmp_path, "clip", 1)
    frame_path(tmp_path, "clip", 0).write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"000000\.png: cannot read PNG"):
        read_frame(tmp_path, "clip", 0)


def test_read_frame_refuses_a_frame_above_the_side_limit_from_its_header(tmp_path):
    """An 8192² black PNG is a few KB on disk and 200 MB decoded: refused before decoding."""
    from export3d_cli.data.dataset_layout import MAX_FRAME_SIDE

    _write_clip(tmp_path, "clip", _frames(1), _params(1))
    side = MAX_FRAME_SIDE * 2
    Image.new("1", (side, side)).save(frame_path(tmp_path, "clip", 0))
    with pytest.raises(InputError, match=rf"000000\.png: {side}x{side} frame; dataset frames are at most"):
        read_frame(tmp_path, "clip", 0)
