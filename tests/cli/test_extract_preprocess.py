"""CLI tests of ``export3d extract`` and ``export3d preprocess`` on generated videos of the example face.

Most runs go through ``export3d_cli.cli.app.run`` in-process (stdout and stderr captured); two run the installed
``export3d`` script to check what a user's terminal sees, including anything native libraries write to fd 2.
The driving video (tests/conftest.py) has 40 frames at 25 fps with no face in frames 15-18.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_support import CliResult, assert_one_clean_error, invoke

import export3d_cli.data.preprocess as preprocess_module
from export3d_cli.data.dataset_layout import (
    is_clip_complete,
    read_clip_params,
    read_frame,
    read_manifest,
    split_for_identity,
)
from export3d_cli.data.preprocess import clip_id_for
from export3d_cli.face.head_pose import NOSE_TIP
from export3d_cli.face.motion_file import load_motion

EXAMPLE_PHOTO = Path(__file__).resolve().parents[2] / "examples" / "source.png"
JSON_KEYS = {
    "output",
    "frames",
    "valid_frames",
    "missing_frames",
    "fps",
    "variable_frame_rate",
    "source",
    "decode_error",
}
RESOLUTION = 128


def export3d_command() -> list[str]:
    script = Path(sys.executable).parent / "export3d"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "export3d_cli"]


def invoke_script(*args: object, cwd: Path) -> CliResult:
    """Run the installed ``export3d`` in a subprocess (its fd-level stderr included)."""
    env = {**os.environ, "EXPORT3D_DEBUG": ""}
    done = subprocess.run(
        [*export3d_command(), *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=180
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``folder``: relative path -> (size, mtime in ns, sha256)."""
    return {
        str(path.relative_to(folder)): (
            path.stat().st_size,
            path.stat().st_mtime_ns,
            hashlib.sha256(path.read_bytes()).hexdigest(),
        )
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def hidden_entries(dataset: Path) -> list[str]:
    """Work folders (``.<clip>.partial-*``) or other hidden leftovers in ``clips/``."""
    clips = dataset / "clips"
    return sorted(entry.name for entry in clips.iterdir() if entry.name.startswith(".")) if clips.is_dir() else []


def person_tree(root: Path, video: Path, *, garbage: bool) -> dict[str, Path]:
    """``root/alice/a.mp4`` and ``root/bob/b.mp4`` (copies of ``video``), plus ``root/bob/bad.mp4`` if ``garbage``."""
    paths = {"alice": root / "alice" / "a.mp4", "bob": root / "bob" / "b.mp4"}
    for path in paths.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(video, path)
    if garbage:
        paths["bad"] = root / "bob" / "bad.mp4"
        paths["bad"].write_bytes(b"this is not a video at all\n" * 10)
    return paths


def preprocess_args(inputs: Path, dataset: Path, *extra: object) -> list[object]:
    return ["preprocess", inputs, "-o", dataset, "--resolution", RESOLUTION, "--identity-from", "parent", *extra]


# ----------------------------------------------------------------------------------------------------- extract


@pytest.fixture(scope="module")
def plain_extract(driving_video, tmp_path_factory):
    output = tmp_path_factory.mktemp("extract") / "motion.npz"
    return invoke("extract", driving_video.path, "-o", output), output


@pytest.fixture(scope="module")
def json_extract(driving_video, tmp_path_factory):
    output = tmp_path_factory.mktemp("extract-json") / "motion.npz"
    return invoke("extract", driving_video.path, "-o", output, "--json"), output


def test_extract_prints_only_the_output_path_and_writes_the_motion(plain_extract, driving_video):
    result, output = plain_extract
    assert result.code == 0, result.err
    assert result.out == f"{output}\n"
    motion = load_motion(output)
    assert motion.frames == 40
    assert int((~motion.valid).sum()) == 4
    np.testing.assert_array_equal(motion.valid, driving_video.valid_mask)
    assert motion.fps == 25.0
    assert motion.source == str(Path(driving_video.path).resolve())


def test_extract_warns_once_about_frames_without_a_face(plain_extract, driving_video):
    result, _ = plain_extract
    assert result.err.splitlines() == [
        f"Warning: {driving_video.path}: no face in 4 of 40 frames; filled by interpolation"
    ]


def test_extract_leaves_no_temporary_files_next_to_the_output(plain_extract):
    _, output = plain_extract
    assert [entry.name for entry in output.parent.iterdir()] == [output.name]


def test_extract_json_prints_one_object_matching_the_motion_file(json_extract, driving_video):
    result, output = json_extract
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 1
    summary = json.loads(result.out)
    assert set(summary) == JSON_KEYS
    assert summary == {
        "output": str(output),
        "frames": 40,
        "valid_frames": 36,
        "missing_frames": 4,
        "fps": 25.0,
        "variable_frame_rate": False,
        "source": str(driving_video.path),
        "decode_error": None,
    }
    assert load_motion(output).frames == summary["frames"]
    assert "no face in 4 of 40 frames" in result.err


def test_extract_quiet_suppresses_the_warning(driving_video, tmp_path):
    output = tmp_path / "motion.npz"
    result = invoke("extract", driving_video.path, "-o", output, "--quiet")
    assert result.code == 0
    assert result.err == ""
    assert result.out == f"{output}\n"
    assert load_motion(output).frames == 40


def test_extract_max_frames_limits_the_motion(driving_video, tmp_path):
    output = tmp_path / "motion.npz"
    result = invoke("extract", driving_video.path, "-o", output, "--max-frames", 5, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["frames"] == 5
    assert load_motion(output).frames == 5
    assert result.err == "", "the first five frames all show the face"


def test_extract_truncated_video_keeps_the_decodable_frames_and_warns(truncated_video, tmp_path):
    output = tmp_path / "motion.npz"
    result = invoke("extract", truncated_video, "-o", output, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert 15 < summary["frames"] < 40
    assert summary["decode_error"]
    assert load_motion(output).frames == summary["frames"]
    assert f"decoding stopped early after {summary['frames']} frames" in result.err


@pytest.fixture
def out_dir(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def test_extract_missing_video_is_one_clean_error(tmp_path, out_dir):
    missing = tmp_path / "missing.mp4"
    result = invoke("extract", missing, "-o", out_dir / "motion.npz")
    assert_one_clean_error(result, names=str(missing))
    assert list(out_dir.iterdir()) == []


def test_extract_text_file_named_mp4_is_one_clean_error(tmp_path, out_dir):
    fake = tmp_path / "notes.mp4"
    fake.write_text("just some text, not a video\n")
    result = invoke("extract", fake, "-o", out_dir / "motion.npz")
    assert_one_clean_error(result, names=str(fake))
    assert "not a video" in result.error_lines[0]
    assert list(out_dir.iterdir()) == []


def test_extract_still_image_is_refused_as_driving_video(out_dir):
    result = invoke("extract", EXAMPLE_PHOTO, "-o", out_dir / "motion.npz")
    assert_one_clean_error(result, names=str(EXAMPLE_PHOTO))
    assert "not a video" in result.error_lines[0]
    assert list(out_dir.iterdir()) == []


def test_extract_video_without_a_face_is_one_clean_error(faceless_video, out_dir):
    result = invoke("extract", faceless_video, "-o", out_dir / "motion.npz")
    assert_one_clean_error(result, names=str(faceless_video))
    assert "no face found in any of its 10 frames" in result.error_lines[0]
    assert list(out_dir.iterdir()) == []


def test_extract_output_must_end_in_npz(driving_video, out_dir):
    output = out_dir / "motion.txt"
    result = invoke("extract", driving_video.path, "-o", output)
    assert_one_clean_error(result, names=str(output))
    assert ".npz" in result.error_lines[0]
    assert list(out_dir.iterdir()) == []


def test_extract_output_that_is_a_folder_is_one_clean_error(driving_video, out_dir):
    folder = out_dir / "motion.npz"
    folder.mkdir()
    result = invoke("extract", driving_video.path, "-o", folder)
    assert_one_clean_error(result, names=str(folder))
    assert "directory" in result.error_lines[0]
    assert list(out_dir.iterdir()) == [folder]
    assert list(folder.iterdir()) == []


def test_extract_negative_smoothing_is_a_usage_error(driving_video, out_dir):
    result = invoke("extract", driving_video.path, "-o", out_dir / "motion.npz", "--smoothing", -1)
    assert_one_clean_error(result, names="--smoothing")
    assert list(out_dir.iterdir()) == []


def test_extract_output_inside_a_file_is_one_clean_error(driving_video, out_dir):
    blocker = out_dir / "not-a-folder"
    blocker.write_text("")
    output = blocker / "motion.npz"
    result = invoke("extract", driving_video.path, "-o", output, "--max-frames", 3)
    assert_one_clean_error(result, names=str(blocker))


def test_extract_script_output_is_exactly_the_path_and_the_warning(driving_video, tmp_path):
    result = invoke_script("extract", driving_video.path, "-o", "motion.npz", cwd=tmp_path)
    assert result.code == 0, result.err
    assert result.out == "motion.npz\n"
    # Nothing else on stderr: no MediaPipe/TFLite log lines leak through fd 2.
    assert result.err == f"Warning: {driving_video.path}: no face in 4 of 40 frames; filled by interpolation\n"
    assert load_motion(tmp_path / "motion.npz").frames == 40


def test_extract_script_failure_prints_a_single_line(faceless_video, tmp_path):
    result = invoke_script("extract", faceless_video, "-o", "motion.npz", cwd=tmp_path)
    assert result.code == 2
    assert result.out == ""
    assert result.err == f"Error: {faceless_video}: no face found in any of its 10 frames\n"
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------------------------- preprocess


@pytest.fixture(scope="module")
def mixed_inputs(driving_video, tmp_path_factory) -> dict[str, Path]:
    """alice/a.mp4 and bob/b.mp4 (face videos) plus bob/bad.mp4 (garbage)."""
    return person_tree(tmp_path_factory.mktemp("people"), driving_video.path, garbage=True)


@pytest.fixture(scope="module")
def mixed_dataset(mixed_inputs, tmp_path_factory):
    """One preprocess run over ``mixed_inputs``: (result, dataset folder)."""
    dataset = tmp_path_factory.mktemp("dataset") / "data"
    result = invoke(*preprocess_args(mixed_inputs["alice"].parent.parent, dataset, "--json"))
    return result, dataset


def test_preprocess_skips_the_bad_file_and_exits_2(mixed_dataset, mixed_inputs):
    result, dataset = mixed_dataset
    assert result.code == 2, result.err
    summary = json.loads(result.out)
    assert summary["output"] == str(dataset)
    assert summary["clips"] == 2
    assert summary["resumed"] == 0
    assert summary["frames"] == 80
    assert summary["missing_frames"] == 8
    bad = str(mixed_inputs["bad"])
    assert [failure["path"] for failure in summary["failed"]] == [bad]
    assert summary["failed"][0]["error"].startswith(bad)
    assert f"Warning: skipped {bad}" in result.err
    assert "1 of 3 videos failed" in result.err
    assert "Traceback" not in result.err


def test_preprocess_manifest_lists_one_clip_per_good_video(mixed_dataset, mixed_inputs):
    _, dataset = mixed_dataset
    manifest = read_manifest(dataset)
    assert manifest.resolution == RESOLUTION
    assert manifest.fps == 25.0
    assert (manifest.expression_kind, manifest.expression_dim) == ("mediapipe-blendshapes", 52)
    by_identity = {clip.identity: clip for clip in manifest.clips}
    assert sorted(by_identity) == ["alice", "bob"]
    for identity in ("alice", "bob"):
        clip = by_identity[identity]
        assert clip.id == clip_id_for(mixed_inputs[identity])
        assert clip.source == str(mixed_inputs[identity])
        assert (clip.frames, clip.valid_frames) == (40, 36)
        assert clip.split == split_for_identity(identity, 0.1, 0)


def test_preprocess_clips_hold_aligned_crops_and_per_frame_params(mixed_dataset, mixed_inputs, driving_video):
    _, dataset = mixed_dataset
    for identity in ("alice", "bob"):
        clip_id = clip_id_for(mixed_inputs[identity])
        assert is_clip_complete(dataset, clip_id)
        names = sorted(path.name for path in (dataset / "clips" / clip_id / "frames").iterdir())
        assert names == [f"{index:06d}.png" for index in range(40)]
        params = read_clip_params(dataset, clip_id)
        np.testing.assert_array_equal(params.valid, driving_video.valid_mask)
        assert params.expression.shape == (40, 52) and params.camera.shape == (40, 25)
        assert params.landmarks.shape == (40, 478, 2)
        noses = params.landmarks[params.valid, NOSE_TIP]
        assert np.abs(noses - RESOLUTION / 2).max() < 0.05 * RESOLUTION, "landmarks are in crop pixels"
        for index in range(40):
            frame = read_frame(dataset, clip_id, index)
            assert frame.shape == (RESOLUTION, RESOLUTION, 3)
            if driving_video.valid_mask[index]:
                assert frame.std() > 20, f"frame {index} should show a face"
            else:
                assert frame.std() < 3 and abs(frame.mean() - 128) < 4, f"frame {index} is a crop of a grey frame"


def test_preprocess_rerun_resumes_without_touching_finished_clips(mixed_dataset, mixed_inputs):
    _, dataset = mixed_dataset
    before, manifest_before = snapshot(dataset / "clips"), read_manifest(dataset)
    result = invoke(*preprocess_args(mixed_inputs["alice"].parent.parent, dataset, "--json"))
    assert result.code == 2, "the bad file still fails"
    summary = json.loads(result.out)
    assert (summary["clips"], summary["resumed"]) == (2, 2)
    assert snapshot(dataset / "clips") == before
    assert read_manifest(dataset) == manifest_before


def test_preprocess_refuses_a_dataset_made_at_another_resolution(mixed_dataset, mixed_inputs):
    _, dataset = mixed_dataset
    before = snapshot(dataset)
    result = invoke("preprocess", mixed_inputs["alice"], "-o", dataset, "--resolution", 256)
    assert_one_clean_error(result, names=str(dataset))
    assert "128px" in result.error_lines[0] and "--resolution" in result.error_lines[0]
    assert result.out == ""
    assert snapshot(dataset) == before


def test_preprocess_unknown_identity_source_is_a_usage_error(mixed_inputs, tmp_path):
    dataset = tmp_path / "data"
    result = invoke("preprocess", mixed_inputs["alice"], "-o", dataset, "--identity-from", "bogus")
    assert_one_clean_error(result, names="bogus")
    assert "--identity-from" in result.error_lines[0]
    assert not dataset.exists()


def test_preprocess_output_that_is_a_file_is_a_usage_error(mixed_inputs, tmp_path):
    dataset = tmp_path / "data"
    dataset.write_text("occupied")
    result = invoke("preprocess", mixed_inputs["alice"], "-o", dataset)
    assert_one_clean_error(result, names=str(dataset))
    assert dataset.read_text() == "occupied"


def test_preprocess_folder_without_videos_is_an_input_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no videos here")
    result = invoke("preprocess", empty, "-o", tmp_path / "data")
    assert_one_clean_error(result, names=str(empty))
    assert "no videos found" in result.error_lines[0]


def test_preprocess_resamples_to_the_requested_fps(driving_video, tmp_path):
    dataset = tmp_path / "data"
    result = invoke("preprocess", driving_video.path, "-o", dataset, "--resolution", RESOLUTION, "--fps", 12.5)
    assert result.code == 0, result.err
    assert result.out == f"{dataset}\n"
    assert result.err == ""
    manifest = read_manifest(dataset)
    assert manifest.fps == 12.5
    (clip,) = manifest.clips
    assert clip.frames == 20 and clip.identity == "driving"
    params = read_clip_params(dataset, clip.id)
    np.testing.assert_array_equal(params.valid, driving_video.valid_mask[::2])
    assert is_clip_complete(dataset, clip.id)


def interrupt_on_call(monkeypatch, call_number: int) -> None:
    """Make ``preprocess``'s crop warp raise KeyboardInterrupt (Ctrl-C) on its ``call_number``-th call."""
    real = preprocess_module.warp_to_crop
    calls = 0

    def warp(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == call_number:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(preprocess_module, "warp_to_crop", warp)


def test_preprocess_interrupt_keeps_finished_clips_and_resumes(driving_video, tmp_path, monkeypatch):
    inputs = person_tree(tmp_path / "people", driving_video.path, garbage=False)
    dataset = tmp_path / "data"
    alice, bob = clip_id_for(inputs["alice"]), clip_id_for(inputs["bob"])
    with monkeypatch.context() as patch:
        interrupt_on_call(patch, 40 + 5)  # alice's clip takes 40 warps; Ctrl-C on bob's fifth frame
        interrupted = invoke(*preprocess_args(tmp_path / "people", dataset, "--json"))
    assert interrupted.code == 130
    assert interrupted.error_lines == ["Error: interrupted"]
    assert "Traceback" not in interrupted.err
    assert [clip.id for clip in read_manifest(dataset).clips] == [alice]
    assert is_clip_complete(dataset, alice)
    assert not (dataset / "clips" / bob).exists()
    assert hidden_entries(dataset) == []

    resumed = invoke(*preprocess_args(tmp_path / "people", dataset, "--json"))
    assert resumed.code == 0, resumed.err
    summary = json.loads(resumed.out)
    assert (summary["clips"], summary["resumed"], summary["failed"]) == (2, 1, [])
    manifest = read_manifest(dataset)
    assert sorted(clip.id for clip in manifest.clips) == sorted([alice, bob])
    assert all(is_clip_complete(dataset, clip.id) for clip in manifest.clips)
    assert read_clip_params(dataset, bob).num_frames == 40
    assert hidden_entries(dataset) == []


def test_preprocess_same_video_named_twice_is_counted_once(driving_video, tmp_path, monkeypatch):
    shutil.copyfile(driving_video.path, tmp_path / "talk.mp4")
    monkeypatch.chdir(tmp_path)
    dataset = tmp_path / "data"
    result = invoke("preprocess", "talk.mp4", tmp_path / "talk.mp4", "-o", dataset, "--max-frames", 3, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    manifest = read_manifest(dataset)
    assert summary["clips"] == len(manifest.clips) == 1
    assert summary["frames"] == sum(clip.frames for clip in manifest.clips) == 3


def test_preprocess_identity_from_parent_uses_the_folder_of_a_symlinked_video(driving_video, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    shutil.copyfile(driving_video.path, raw / "x.mp4")
    link = tmp_path / "people" / "carol" / "c.mp4"
    link.parent.mkdir(parents=True)
    link.symlink_to(raw / "x.mp4")
    dataset = tmp_path / "data"
    result = invoke("preprocess", tmp_path / "people", "-o", dataset, "--identity-from", "parent", "--max-frames", 3)
    assert result.code == 0, result.err
    assert [clip.identity for clip in read_manifest(dataset).clips] == ["carol"]
