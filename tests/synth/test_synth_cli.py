"""CLI tests of ``export3d synth``: summary, manifest and splits, ground truth, determinism, resume, errors, Ctrl-C.

The reference dataset (3 identities x 1 clip x 6 frames at 96 px, seed 5) is generated once per module; with the
default test fraction one identity is held out and gets one cross-identity clip. Runs go through
``export3d_cli.cli.app.run`` in-process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_support import CliResult, invoke

import export3d_cli.synth.dataset_generator as generator_module
from export3d_cli.camera_conventions import CAMERA_RADIUS
from export3d_cli.data.dataset_layout import (
    ClipRecord,
    Manifest,
    is_clip_complete,
    read_clip_params,
    read_frame,
    read_manifest,
)
from export3d_cli.face.blendshapes import EXPRESSION_DIM
from export3d_cli.face.head_pose import ffhq_intrinsics, label_angles
from export3d_cli.synth.dataset_generator import SynthConfig, cross_pairs
from export3d_cli.synth.face_rig import CONTROL_NAMES
from export3d_cli.synth.head_renderer import SyntheticHead
from export3d_cli.synth.identity import random_identity

IDENTITIES = 3
FRAMES = 6
RESOLUTION = 96
SEED = 5
JSON_KEYS = {"output", "clips", "train_clips", "test_clips", "frames", "undetected_frames"}


def synth_args(output: Path, *extra: object, frames: int = FRAMES, seed: int = SEED) -> list[object]:
    return [
        "synth",
        "-o",
        output,
        "--identities",
        IDENTITIES,
        "--clips-per-identity",
        1,
        "--frames",
        frames,
        "--resolution",
        RESOLUTION,
        "--seed",
        seed,
        *extra,
    ]


def snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: relative path -> (mtime in ns, sha256)."""
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder``: relative path -> sha256 of its bytes."""
    return {name: digest for name, (_, digest) in snapshot(folder).items()}


def hidden_entries(dataset: Path) -> list[str]:
    clips = dataset / "clips"
    return sorted(entry.name for entry in clips.iterdir() if entry.name.startswith(".")) if clips.is_dir() else []


def frames_of(dataset: Path, clip: ClipRecord) -> np.ndarray:
    return np.stack([read_frame(dataset, clip.id, index) for index in range(clip.frames)])


def assert_one_clean_error(result: CliResult) -> None:
    assert result.code == 2, result
    assert len(result.error_lines) == 1, result.err
    assert "Traceback" not in result.err
    assert "internal error" not in result.err


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[CliResult, Path]:
    dataset = tmp_path_factory.mktemp("synth") / "dataset"
    return invoke(*synth_args(dataset, "--json", "-q")), dataset


@pytest.fixture(scope="module")
def dataset(reference) -> Path:
    result, path = reference
    assert result.code == 0, result.err
    return path


@pytest.fixture(scope="module")
def manifest(dataset) -> Manifest:
    return read_manifest(dataset)


def regular_clips(manifest: Manifest) -> list[ClipRecord]:
    return [clip for clip in manifest.clips if not clip.extra.get("cross_identity")]


def cross_clips(manifest: Manifest) -> list[ClipRecord]:
    return [clip for clip in manifest.clips if clip.extra.get("cross_identity")]


# ------------------------------------------------------------------------------------------------- summary


def test_json_summary_matches_the_manifest(reference, manifest):
    result, dataset = reference
    assert result.code == 0, result.err
    assert result.err == ""  # -q: no progress bar, and no MediaPipe chatter
    summary = json.loads(result.out)
    assert set(summary) == JSON_KEYS
    assert summary["output"] == str(dataset)
    assert summary["clips"] == len(manifest.clips) == IDENTITIES + len(cross_clips(manifest))
    assert summary["train_clips"] == len(manifest.split("train"))
    assert summary["test_clips"] == len(manifest.split("test"))
    assert summary["train_clips"] + summary["test_clips"] == summary["clips"]
    assert summary["frames"] == sum(clip.frames for clip in manifest.clips) == summary["clips"] * FRAMES
    assert summary["undetected_frames"] == sum(clip.frames - clip.valid_frames for clip in manifest.clips)


def test_without_json_only_the_output_folder_is_printed(tmp_path, dataset):
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    result = invoke(*synth_args(copy, "-q"))  # everything exists: nothing is rendered
    assert result.code == 0, result.err
    assert result.out == f"{copy}\n"


def test_manifest_describes_the_synthetic_dataset(dataset, manifest):
    assert manifest.resolution == RESOLUTION
    assert manifest.fps == 25.0
    assert manifest.expression_dim == EXPRESSION_DIM
    assert manifest.generator.startswith("export3d synth")
    assert (dataset / "synth.json").is_file()
    for clip in manifest.clips:
        assert clip.extra["synthetic"] is True
        assert clip.source == "synthetic"
        assert clip.frames == FRAMES
        assert is_clip_complete(dataset, clip.id)
        assert read_clip_params(dataset, clip.id).valid.sum() == clip.valid_frames
    assert hidden_entries(dataset) == []


def test_every_clip_on_disk_is_in_the_manifest(dataset, manifest):
    on_disk = sorted(entry.name for entry in (dataset / "clips").iterdir())
    assert on_disk == [clip.id for clip in manifest.clips]


def test_splits_hold_out_whole_identities(manifest):
    splits: dict[str, set[str]] = {}
    for clip in manifest.clips:
        splits.setdefault(clip.identity, set()).add(clip.split)
    assert len(splits) == IDENTITIES
    assert all(len(names) == 1 for names in splits.values()), splits
    test_identities = {identity for identity, names in splits.items() if names == {"test"}}
    assert 1 <= len(test_identities) < IDENTITIES
    for identity in splits:
        assert len([clip for clip in regular_clips(manifest) if clip.identity == identity]) == 1


# ------------------------------------------------------------------------------------------------- cross-identity


def test_each_test_identity_has_a_cross_identity_clip(manifest):
    ids = {clip.id for clip in manifest.clips}
    test_identities = {clip.identity for clip in manifest.split("test")}
    crosses = cross_clips(manifest)
    assert {clip.identity for clip in crosses} == test_identities
    for clip in crosses:
        assert clip.split == "test"
        assert clip.extra["driving_clip"] in ids
        assert clip.extra["appearance_clip"] in ids
        appearance = next(other for other in manifest.clips if other.id == clip.extra["appearance_clip"])
        driving = next(other for other in manifest.clips if other.id == clip.extra["driving_clip"])
        assert appearance.identity == clip.identity
        assert driving.identity != clip.identity
        assert clip.extra["driving_identity"] == driving.identity


def test_cross_identity_clip_copies_the_drivers_expression_camera_and_controls(dataset, manifest):
    for clip in cross_clips(manifest):
        cross = read_clip_params(dataset, clip.id)
        driving = read_clip_params(dataset, clip.extra["driving_clip"])
        np.testing.assert_array_equal(cross.expression, driving.expression)
        np.testing.assert_array_equal(cross.valid, driving.valid)
        np.testing.assert_array_equal(cross.camera, driving.camera)
        np.testing.assert_array_equal(cross.extra["controls"], driving.extra["controls"])
        np.testing.assert_array_equal(cross.extra["angles"], driving.extra["angles"])
        assert not np.array_equal(cross.landmarks, driving.landmarks)  # another face shape, same camera


def test_cross_identity_clip_shows_another_person_in_the_appearance_clips_backdrop(dataset, manifest):
    for clip in cross_clips(manifest):
        cross = frames_of(dataset, clip).astype(np.int32)
        driving = frames_of(dataset, next(c for c in manifest.clips if c.id == clip.extra["driving_clip"]))
        appearance = frames_of(dataset, next(c for c in manifest.clips if c.id == clip.extra["appearance_clip"]))
        assert np.abs(cross - driving).mean() > 5.0
        corner = (slice(None), slice(0, 4), slice(0, 4))  # top-left: backdrop in every frame
        assert np.abs(cross[corner] - appearance[corner].astype(np.int32)).max() <= 1
        assert np.abs(cross[corner] - driving[corner].astype(np.int32)).max() > 1


# ------------------------------------------------------------------------------------------------- ground truth


def test_params_have_the_documented_shapes_and_ranges(dataset, manifest):
    for clip in manifest.clips:
        params = read_clip_params(dataset, clip.id)
        assert params.expression.shape == (FRAMES, EXPRESSION_DIM)
        assert np.isfinite(params.expression).all()
        controls = params.extra["controls"]
        assert controls.shape == (FRAMES, len(CONTROL_NAMES))
        assert controls.min() >= 0.0
        assert controls.max() <= 1.0
        assert params.extra["angles"].shape == (FRAMES, 2)
        if not clip.extra.get("cross_identity"):
            assert params.extra["measured_camera"].shape == (FRAMES, 25)
        frame = read_frame(dataset, clip.id, 0)
        assert frame.shape == (RESOLUTION, RESOLUTION, 3)


def test_cameras_are_valid_eg3d_look_at_labels_matching_the_stored_angles(dataset, manifest):
    for clip in manifest.clips:
        params = read_clip_params(dataset, clip.id)
        for label, (yaw, pitch) in zip(params.camera, params.extra["angles"], strict=True):
            cam2world = label[:16].reshape(4, 4).astype(np.float64)
            rotation = cam2world[:3, :3]
            np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-5)
            assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-5)
            np.testing.assert_allclose(cam2world[3], [0.0, 0.0, 0.0, 1.0], atol=0)
            np.testing.assert_allclose(label[16:].reshape(3, 3), ffhq_intrinsics(), atol=1e-6)
            assert np.linalg.norm(cam2world[:3, 3]) == pytest.approx(CAMERA_RADIUS, abs=1e-4)
            measured_yaw, measured_pitch, roll = label_angles(label)
            assert measured_yaw == pytest.approx(float(yaw), abs=1e-3)
            assert measured_pitch == pytest.approx(float(pitch), abs=1e-3)
            assert roll == pytest.approx(0.0, abs=1e-3)


def test_landmarks_are_the_exact_projection_of_the_posed_head(dataset, manifest):
    for clip in regular_clips(manifest):
        params = read_clip_params(dataset, clip.id)
        index = int(clip.identity.removeprefix("synth"))
        head = SyntheticHead(random_identity(index, SEED))
        for t in (0, FRAMES - 1):
            expected = head.landmarks(params.extra["controls"][t], params.camera[t], RESOLUTION)
            np.testing.assert_allclose(params.landmarks[t], expected, atol=1e-3)
        inside = ((params.landmarks >= 0) & (params.landmarks <= RESOLUTION)).all(axis=-1)
        assert inside.mean() > 0.95


def test_the_measured_camera_roughly_agrees_with_the_true_one(dataset, manifest):
    for clip in regular_clips(manifest):
        params = read_clip_params(dataset, clip.id)
        assert params.valid.sum() >= FRAMES // 2, clip.id  # MediaPipe finds most synthetic faces
        for valid, label, (yaw, _) in zip(
            params.valid, params.extra["measured_camera"], params.extra["angles"], strict=True
        ):
            if valid:
                assert label_angles(label)[0] == pytest.approx(float(yaw), abs=10.0), clip.id


# ------------------------------------------------------------------------------------------------- determinism


def test_same_arguments_give_byte_identical_datasets(dataset, tmp_path):
    again = tmp_path / "again"
    result = invoke(*synth_args(again, "-q"))
    assert result.code == 0, result.err
    assert contents(again) == contents(dataset)
    assert "synth.json" in contents(again)
    assert "manifest.json" in contents(again)


def test_another_seed_gives_other_frames(dataset, manifest, tmp_path):
    other = tmp_path / "other"
    result = invoke(*synth_args(other, "-q", seed=SEED + 1))
    assert result.code == 0, result.err
    first = manifest.clips[0].id
    assert (other / "clips" / first).is_dir()
    assert not np.array_equal(read_frame(other, first, 0), read_frame(dataset, first, 0))
    assert json.loads((other / "synth.json").read_text())["seed"] == SEED + 1


# ------------------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize("damage", ["folder", "marker"])
def test_resume_regenerates_a_missing_clip_identically_and_leaves_the_others(dataset, manifest, tmp_path, damage):
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    victim = regular_clips(manifest)[1].id
    before = snapshot(copy)
    if damage == "folder":
        shutil.rmtree(copy / "clips" / victim)
    else:
        (copy / "clips" / victim / ".complete").unlink()
    result = invoke(*synth_args(copy, "-q"))
    assert result.code == 0, result.err
    after = snapshot(copy)
    assert contents(copy) == contents(dataset)
    for name, (mtime, _) in before.items():
        if name.startswith("clips/") and not name.startswith(f"clips/{victim}/"):
            assert after[name][0] == mtime, f"{name} was rewritten"
    assert hidden_entries(copy) == []


def test_other_arguments_into_an_existing_dataset_are_refused(dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    before = snapshot(copy)
    result = invoke(*synth_args(copy, "-q", frames=FRAMES + 1))
    assert_one_clean_error(result)
    assert str(copy) in result.error_lines[0]
    assert snapshot(copy) == before


def test_a_dataset_written_before_the_expressions_option_resumes_as_speech_only(dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    config = json.loads((copy / "synth.json").read_text())
    config.pop("expressions")
    (copy / "synth.json").write_text(json.dumps(config))
    assert_one_clean_error(invoke(*synth_args(copy, "-q")))  # the default is now the full range
    result = invoke(*synth_args(copy, "-q", "--expressions", "speech"))
    assert result.code == 0, result.err


def test_a_dataset_that_synth_did_not_write_is_refused(dataset, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    (copy / "synth.json").unlink()
    before = snapshot(copy)
    result = invoke(*synth_args(copy, "-q"))
    assert_one_clean_error(result)
    assert snapshot(copy) == before


# ------------------------------------------------------------------------------------------------- usage errors


def test_output_that_is_an_existing_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder\n")
    result = invoke(*synth_args(target, "-q"))
    assert_one_clean_error(result)
    assert str(target) in result.error_lines[0]
    assert target.read_text() == "not a folder\n"


@pytest.mark.parametrize(
    ("option", "value"),
    [("--identities", 0), ("--clips-per-identity", 0), ("--frames", 0), ("--resolution", 16)],
)
def test_out_of_range_counts_are_usage_errors(tmp_path, option, value):
    output = tmp_path / "out"
    args = synth_args(output, "-q")
    args[args.index(option) + 1] = value
    result = invoke(*args)
    assert result.code == 2, result
    assert option in result.err
    assert "Traceback" not in result.err
    assert not output.exists()


# ------------------------------------------------------------------------------------------------- Ctrl-C


def test_interrupt_exits_130_keeps_finished_clips_and_a_rerun_completes_identically(dataset, tmp_path, monkeypatch):
    output = tmp_path / "interrupted"
    original = SyntheticHead.render
    calls = {"count": 0}

    def render_then_interrupt(self, *args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 8:  # the second clip's second frame
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(generator_module.SyntheticHead, "render", render_then_interrupt)
    result = invoke(*synth_args(output, "-q"))
    assert result.code == 130, result
    assert result.error_lines == ["Error: interrupted"], result.err
    assert "Traceback" not in result.err
    partial = read_manifest(output)
    assert [clip.id for clip in partial.clips] == ["synth00000-clip00"]
    assert all(is_clip_complete(output, clip.id) for clip in partial.clips)
    assert sorted(entry.name for entry in (output / "clips").iterdir()) == ["synth00000-clip00"]
    assert hidden_entries(output) == []

    monkeypatch.setattr(generator_module.SyntheticHead, "render", original)
    rerun = invoke(*synth_args(output, "-q"))
    assert rerun.code == 0, rerun.err
    assert contents(output) == contents(dataset)


# ------------------------------------------------------------------------------------------------- edge cases


def test_one_frame_clips_can_be_generated(tmp_path):
    output = tmp_path / "one"
    result = invoke(*synth_args(output, "-q", frames=1))
    assert result.code == 0, result.err
    assert all(clip.frames == 1 for clip in read_manifest(output).clips)


def test_cross_pairs_are_distinct():
    for seed in range(6):
        pairs = cross_pairs(SynthConfig(IDENTITIES, 1, FRAMES, RESOLUTION, seed, 0.1, cross_clips=2))
        assert len(pairs) == len(set(pairs)), (seed, pairs)


def test_two_cross_clips_per_test_identity_can_be_generated(tmp_path):
    output = tmp_path / "crosses"
    result = invoke(*synth_args(output, "-q", "--cross-clips", 2, frames=3, seed=0))
    assert result.code == 0, result.err
    crosses = cross_clips(read_manifest(output))
    assert len(crosses) == 2
    assert len({clip.id for clip in crosses}) == 2
