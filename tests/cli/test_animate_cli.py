"""CLI tests of ``export3d animate``, ``novel-view`` and ``sweep-basis`` with a tiny random model.

Every run goes through ``export3d_cli.cli.app.run`` in-process with ``--weights`` pointing at a tiny random model
saved once per session (the bundled weights may not exist). Runs are kept short with ``--max-frames``. Inputs:
``examples/source.png`` (512², one face) and ``examples/driving.mp4`` (100 frames, 256², 25 fps, with audio);
the conftest's generated 40-frame video has no audio and no face in frames 15-18.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from cli_support import CliResult, assert_one_clean_error, invoke
from model_support import saved_tiny_weights
from PIL import Image

from export3d_cli.config import preset
from export3d_cli.face.analysis import analyze_image
from export3d_cli.media.image_io import load_image
from export3d_cli.media.video_reader import probe_video, read_video_frames
from export3d_cli.media.video_writer import VideoWriter
from export3d_cli.models import Export3D
from export3d_cli.pipeline.animator import Animator
from export3d_cli.pipeline.compose import fit_square

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SOURCE = EXAMPLES / "source.png"
DRIVER = EXAMPLES / "driving.mp4"
FRAMES = 12
RESOLUTION = 64  # the tiny preset's output size
CODEC_TOLERANCE = 2.0  # mean absolute difference of an H.264 (CRF 18) round trip, in intensity levels
JOB_KEYS = {"source", "output", "frames", "missing_frames", "fps", "audio"}
needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without a GPU")


def decode(path: Path) -> np.ndarray:
    """All frames of a video as int [T, H, W, 3] (signed, so differences do not wrap)."""
    return np.stack(list(read_video_frames(path))).astype(int)


def read_png(path: Path) -> np.ndarray:
    return load_image(path).astype(int)


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


def files_in(folder: Path) -> list[str]:
    """Every entry of ``folder`` (hidden temporary files included), sorted."""
    return sorted(entry.name for entry in folder.iterdir())


def cell(grid: np.ndarray, index: int, columns: int = 3) -> np.ndarray:
    row, column = divmod(index, columns)
    return grid[row * RESOLUTION : (row + 1) * RESOLUTION, column * RESOLUTION : (column + 1) * RESOLUTION]


# ---------------------------------------------------------------------------------------------------- weights


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    return saved_tiny_weights(tmp_path_factory.mktemp("weights-tiny"))


@pytest.fixture(scope="session")
def direct_weights(tmp_path_factory) -> Path:
    """Tiny weights with the "direct" expression encoder (no CLeBS basis)."""
    tiny = preset("tiny")
    config = dataclasses.replace(tiny, expression=dataclasses.replace(tiny.expression, kind="direct"))
    folder = tmp_path_factory.mktemp("weights-direct")
    torch.manual_seed(0)
    Export3D(config).save_pretrained(folder)
    return folder


@pytest.fixture
def out_dir(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def animate(weights: Path, *args: object) -> CliResult:
    return invoke("animate", *args, "--weights", weights)


# ------------------------------------------------------------------------------------------ animate: basics


@pytest.fixture(scope="module")
def basic(weights, tmp_path_factory) -> tuple[CliResult, Path]:
    """source.png driven by the first 12 frames of driving.mp4, quiet: (result, output)."""
    output = tmp_path_factory.mktemp("basic") / "basic.mp4"
    return animate(weights, SOURCE, DRIVER, "-o", output, "--max-frames", FRAMES, "-q"), output


@pytest.fixture(scope="module")
def reference_frames(basic) -> np.ndarray:
    result, output = basic
    assert result.code == 0, result.err
    return decode(output)


def test_animate_prints_only_the_output_path(basic):
    result, output = basic
    assert result.code == 0, result.err
    assert result.out == f"{output}\n"
    assert result.err == ""


def test_animate_writes_max_frames_at_the_drivers_rate_and_the_models_size_with_audio(basic, reference_frames):
    _, output = basic
    assert reference_frames.shape == (FRAMES, RESOLUTION, RESOLUTION, 3)
    info = probe_video(output)
    assert (info.fps, info.width, info.height) == (25.0, RESOLUTION, RESOLUTION)
    assert info.has_audio, "the driver's audio track is copied"
    assert info.duration == pytest.approx(FRAMES / 25.0, abs=0.05)
    assert reference_frames.std() > 5, "the frames show the render, not a flat colour"


@pytest.fixture(scope="module")
def variable_rate_driver(tmp_path_factory) -> Path:
    """The first 12 frames of driving.mp4 re-stamped irregularly (frames 6-11 1.5 frame intervals apart, times
    truncated to 1/25 s), with its audio: a phone-style variable-frame-rate clip."""
    path = tmp_path_factory.mktemp("vfr") / "phone.mkv"
    retime = "setpts='(N+if(gt(N\\,5)\\,N/2\\,0))/25/TB'"
    cmd = [FFMPEG, "-hide_banner", "-loglevel", "error", "-i", str(DRIVER), "-frames:v", str(FRAMES), "-vf", retime]
    subprocess.run([*cmd, "-fps_mode", "vfr", "-c:v", "libx264", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def test_a_variable_rate_driver_gives_each_frame_its_own_time_through_a_motion_file_too(
    weights, out_dir, variable_rate_driver
):
    driver_times = probe_video(variable_rate_driver).frame_times
    assert driver_times is not None and len(driver_times) == FRAMES
    motion = out_dir / "phone.npz"
    extracted = invoke("extract", variable_rate_driver, "-o", motion, "--json", "-q")
    assert extracted.code == 0, extracted.err
    assert json.loads(extracted.out)["variable_frame_rate"] is True
    for driving in (variable_rate_driver, motion):
        output = out_dir / f"from_{driving.suffix[1:]}.mp4"
        result = animate(weights, SOURCE, driving, "-o", output, "-q")
        assert result.code == 0, result.err
        info = probe_video(output)
        assert info.has_audio
        # One output frame per driving frame, each at its driving frame's moment (90 kHz clock).
        np.testing.assert_allclose(info.frame_times, driver_times - driver_times[0], atol=1e-4)
        assert len(decode(output)) == FRAMES


def test_animate_leaves_no_temporary_files_next_to_the_output(basic):
    _, output = basic
    assert files_in(output.parent) == [output.name]


def test_animate_no_audio_json_prints_one_object_and_writes_a_silent_video(weights, out_dir):
    output = out_dir / "silent.mp4"
    result = animate(weights, SOURCE, DRIVER, "-o", output, "--max-frames", 3, "--no-audio", "--json")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 1
    summary = json.loads(result.out)
    assert summary == {
        "outputs": [
            {
                "source": str(SOURCE),
                "output": str(output),
                "frames": 3,
                "missing_frames": 0,
                "fps": 25.0,
                "audio": False,
            }
        ],
        "failed": [],
    }
    assert not probe_video(output).has_audio
    assert decode(output).shape[0] == 3


@pytest.fixture(scope="module")
def whole_driver(weights, driving_video, tmp_path_factory) -> tuple[CliResult, Path]:
    """The conftest's 40-frame video (no audio, frames 15-18 faceless), without --max-frames, --json."""
    output = tmp_path_factory.mktemp("whole") / "whole.mp4"
    return animate(weights, SOURCE, driving_video.path, "-o", output, "--json"), output


def test_animate_without_max_frames_renders_every_driving_frame(whole_driver, driving_video):
    result, output = whole_driver
    assert result.code == 0, result.err
    (job,) = json.loads(result.out)["outputs"]
    assert set(job) == JOB_KEYS
    assert (job["frames"], job["missing_frames"], job["fps"]) == (40, 4, 25.0)
    assert decode(output).shape == (driving_video.frames, RESOLUTION, RESOLUTION, 3)
    assert f"Warning: {driving_video.path}: no face in 4 of 40 frames" in result.err


def test_animate_driver_without_audio_gives_a_silent_video(whole_driver):
    result, output = whole_driver
    assert json.loads(result.out)["outputs"][0]["audio"] is False
    assert not probe_video(output).has_audio


def test_animate_default_output_is_source__driving_in_the_current_folder(weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = animate(weights, SOURCE, DRIVER, "--max-frames", 2, "-q")
    assert result.code == 0, result.err
    assert result.out == "source__driving.mp4\n"
    assert files_in(tmp_path) == ["source__driving.mp4"]
    assert decode(tmp_path / "source__driving.mp4").shape[0] == 2


# ------------------------------------------------------------------------------------- animate: motion file


@pytest.fixture(scope="module")
def motion_file(tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("motion") / "m.npz"
    result = invoke("extract", DRIVER, "-o", output, "--max-frames", FRAMES, "-q")
    assert result.code == 0, result.err
    return output


@pytest.fixture(scope="module")
def from_motion(weights, motion_file) -> tuple[CliResult, Path]:
    output = motion_file.parent / "from-motion.mp4"
    return animate(weights, SOURCE, motion_file, "-o", output, "--json"), output


def test_animate_from_a_motion_file_matches_animating_from_the_video(from_motion, reference_frames):
    result, output = from_motion
    assert result.code == 0, result.err
    assert json.loads(result.out)["outputs"][0]["frames"] == FRAMES
    frames = decode(output)
    assert frames.shape == reference_frames.shape
    assert mean_difference(frames, reference_frames) < 0.5
    assert np.abs(frames - reference_frames).max() <= 2 * CODEC_TOLERANCE


def test_animate_from_a_motion_file_finds_the_audio_through_its_source(from_motion):
    result, output = from_motion
    assert json.loads(result.out)["outputs"][0]["audio"] is True
    assert probe_video(output).has_audio


@pytest.fixture(scope="module")
def orphan_motion(tmp_path_factory) -> Path:
    """A motion file extracted from a copy of driving.mp4 that was deleted afterwards."""
    folder = tmp_path_factory.mktemp("orphan")
    video = shutil.copyfile(DRIVER, folder / "gone.mp4")
    result = invoke("extract", video, "-o", folder / "orphan.npz", "--max-frames", 3, "-q")
    assert result.code == 0, result.err
    Path(video).unlink()
    return folder / "orphan.npz"


def test_animate_motion_file_whose_video_is_gone_gives_a_silent_video(weights, orphan_motion, out_dir):
    output = out_dir / "orphan.mp4"
    result = animate(weights, SOURCE, orphan_motion, "-o", output, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["outputs"][0]["audio"] is False
    assert decode(output).shape[0] == 3
    warnings = [line for line in result.err.splitlines() if "no audio" in line]
    assert len(warnings) == 1 and "gone.mp4" in warnings[0] and "is not there" in warnings[0]


def test_a_motion_file_extracted_from_a_relative_path_keeps_its_video_when_used_from_another_folder(
    weights, tmp_path, monkeypatch
):
    """Extracted in one folder, used from another that holds a different video of the same name."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    shutil.copyfile(DRIVER, here / "talk.mp4")
    monkeypatch.chdir(here)
    assert invoke("extract", "talk.mp4", "-o", "m.npz", "--max-frames", 3, "-q").code == 0
    (elsewhere / "talk.mp4").write_bytes(b"another file of the same name")
    monkeypatch.chdir(elsewhere)
    result = animate(weights, SOURCE, here / "m.npz", "-o", tmp_path / "out.mp4", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["outputs"][0]["audio"] is True
    assert "no audio" not in result.err


def test_animate_side_by_side_from_a_motion_file_whose_video_is_gone_fails_cleanly(weights, orphan_motion, out_dir):
    result = animate(weights, SOURCE, orphan_motion, "-o", out_dir / "orphan.mp4", "--side-by-side")
    assert_one_clean_error(result, names=str(orphan_motion))
    assert "--side-by-side needs the driving video" in result.error_lines[0]
    assert files_in(out_dir) == []


# ----------------------------------------------------------------------------------------- animate: options


@pytest.mark.parametrize(
    "option", [("--pose", "source"), ("--pose", "frontal"), ("--expression", "relative")], ids=" ".join
)
def test_animate_pose_and_expression_modes_change_the_frames(weights, reference_frames, out_dir, option):
    output = out_dir / "mode.mp4"
    result = animate(weights, SOURCE, DRIVER, "-o", output, "--max-frames", FRAMES, "-q", *option)
    assert result.code == 0, result.err
    frames = decode(output)
    assert frames.shape == reference_frames.shape
    # Identical inputs encode identically (see the motion-file test); these differ by about a level on average.
    assert mean_difference(frames, reference_frames) > 0.25


@pytest.mark.parametrize(
    ("option", "names"),
    [
        (("--pose", "bogus"), "--pose"),
        (("--expression", "bogus"), "--expression"),
        (("--precision", "fp8"), "--precision"),
        pytest.param(("--precision", "bf16"), "--precision bf16", marks=needs_no_cuda),
        pytest.param(("--device", "cuda"), "--device cuda", marks=needs_no_cuda),
        (("--batch-size", "0"), "--batch-size"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else None,
)
def test_animate_bad_option_is_one_clean_error_and_writes_nothing(weights, out_dir, option, names):
    result = animate(weights, SOURCE, DRIVER, "-o", out_dir / "out.mp4", "--max-frames", 2, *option)
    assert_one_clean_error(result, names=names)
    assert result.out == ""
    assert files_in(out_dir) == []


def test_animate_paste_back_keeps_the_photo_size_and_the_pixels_away_from_the_face(weights, out_dir):
    output = out_dir / "pasted.mp4"
    result = animate(weights, SOURCE, DRIVER, "-o", output, "--max-frames", 3, "--paste-back", "-q")
    assert result.code == 0, result.err
    frames = decode(output)
    photo = load_image(SOURCE).astype(int)
    assert frames.shape == (3, *photo.shape)
    for frame in frames:
        assert mean_difference(frame[:40, :40], photo[:40, :40]) < 6
        assert mean_difference(frame[-40:, -40:], photo[-40:, -40:]) < 6
    face = analyze_image(SOURCE)
    x, y = np.round(face.landmarks[4, :2]).astype(int)  # the nose tip
    assert mean_difference(frames[0][y - 20 : y + 20, x - 20 : x + 20], photo[y - 20 : y + 20, x - 20 : x + 20]) > 20


def test_animate_side_by_side_shows_source_driver_and_result(weights, reference_frames, out_dir):
    output = out_dir / "panels.mp4"
    result = animate(weights, SOURCE, DRIVER, "-o", output, "--max-frames", 3, "--side-by-side", "-q")
    assert result.code == 0, result.err
    frames = decode(output)
    assert frames.shape == (3, RESOLUTION, 3 * RESOLUTION, 3)
    crop = analyze_image(SOURCE).crop
    driver = list(read_video_frames(DRIVER))[:3]
    # Small, detailed panels lose more to the codec than a plain render; different panels differ by ~80 levels.
    for index, frame in enumerate(frames):
        left, middle, right = np.split(frame, 3, axis=1)
        assert mean_difference(left, fit_square(crop, RESOLUTION)) < 10
        assert mean_difference(middle, fit_square(driver[index], RESOLUTION)) < 10
        assert mean_difference(right, reference_frames[index]) < 10


def test_animate_side_by_side_with_paste_back_uses_photo_sized_panels(weights, out_dir):
    output = out_dir / "panels.mp4"
    result = animate(weights, SOURCE, DRIVER, "-o", output, "--max-frames", 2, "--side-by-side", "--paste-back", "-q")
    assert result.code == 0, result.err
    info = probe_video(output)
    assert (info.width, info.height) == (512 + 2 * 512, 512)


# ------------------------------------------------------------------------------------------- animate: batch


@pytest.fixture
def batch_sources(tmp_path) -> dict[str, Path]:
    """a.png and b.png (copies of the photo) and bad.png (a text file) in ``tmp_path / "in"``."""
    folder = tmp_path / "in"
    folder.mkdir()
    sources = {name: folder / f"{name}.png" for name in ("a", "b", "bad")}
    shutil.copyfile(SOURCE, sources["a"])
    shutil.copyfile(SOURCE, sources["b"])
    sources["bad"].write_text("this is not an image\n")
    return sources


def test_animate_batch_continue_on_error_writes_the_good_ones_and_reports_the_bad_one(weights, batch_sources, out_dir):
    a, b, bad = batch_sources["a"], batch_sources["b"], batch_sources["bad"]
    result = animate(weights, a, bad, b, DRIVER, "-o", out_dir, "--continue-on-error", "--json", "--max-frames", 3)
    assert result.code == 2, result.err
    summary = json.loads(result.out)
    assert [job["output"] for job in summary["outputs"]] == [
        str(out_dir / "a__driving.mp4"),
        str(out_dir / "b__driving.mp4"),
    ]
    assert [job["source"] for job in summary["outputs"]] == [str(a), str(b)]
    (failure,) = summary["failed"]
    assert failure["source"] == str(bad) and failure["exit_code"] == 2
    assert failure["error"].startswith(f"{bad}: ")
    assert result.error_lines == [f"Error: {failure['error']}"]
    assert "1 of 3 sources failed" in result.err
    assert "Traceback" not in result.err
    assert files_in(out_dir) == ["a__driving.mp4", "b__driving.mp4"]
    assert decode(out_dir / "b__driving.mp4").shape == (3, RESOLUTION, RESOLUTION, 3)


@pytest.mark.parametrize("order", [("bad", "a", "b"), ("a", "b", "bad")])
def test_animate_batch_without_continue_on_error_refuses_a_bad_photo_before_any_work(
    weights, batch_sources, out_dir, order, monkeypatch
):
    analysed = []
    monkeypatch.setattr("export3d_cli.pipeline.driving.load_driving", lambda *a, **k: analysed.append(a))
    sources = [batch_sources[name] for name in order]
    result = animate(weights, *sources, DRIVER, "-o", out_dir, "--max-frames", 2)
    assert_one_clean_error(result, names=str(batch_sources["bad"]))
    assert "not an image" in result.error_lines[0]
    assert result.out == "" and analysed == [], "the driver is not analysed for a batch that cannot finish"
    assert files_in(out_dir) == []


def test_animate_batch_loads_the_model_once_and_exits_0_when_all_succeed(weights, batch_sources, out_dir, monkeypatch):
    real = Animator.from_weights
    calls = []

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(Animator, "from_weights", staticmethod(counting))
    result = animate(weights, batch_sources["a"], batch_sources["b"], DRIVER, "-o", out_dir, "--max-frames", 2, "-q")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [str(out_dir / "a__driving.mp4"), str(out_dir / "b__driving.mp4")]
    assert len(calls) == 1
    assert files_in(out_dir) == ["a__driving.mp4", "b__driving.mp4"]


def test_animate_batch_sources_with_the_same_file_name_are_refused(weights, tmp_path, out_dir):
    first, second = tmp_path / "x" / "face.png", tmp_path / "y" / "face.png"
    for path in (first, second):
        path.parent.mkdir()
        shutil.copyfile(SOURCE, path)
    result = animate(weights, first, second, DRIVER, "-o", out_dir, "--max-frames", 2)
    assert_one_clean_error(result, names="share a file name")
    assert files_in(out_dir) == []


# ------------------------------------------------------------------------------------------ animate: errors


def grey_png(path: Path) -> Path:
    Image.fromarray(np.full((256, 256, 3), 128, np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing source", "no such file"),
        ("missing driver", "no such file"),
        ("text file as source", "not an image"),
        ("source without a face", "no face found"),
        ("text file as driver", "not a video"),
        ("photo as driver", "not a video"),
    ],
)
def test_animate_unusable_input_is_one_clean_error_naming_the_file(weights, tmp_path, out_dir, case, message):
    source, driver = SOURCE, DRIVER
    if case == "missing source":
        source = bad = tmp_path / "nobody.png"
    elif case == "missing driver":
        driver = bad = tmp_path / "nothing.mp4"
    elif case == "text file as source":
        source = bad = tmp_path / "notes.png"
        bad.write_text("not an image\n")
    elif case == "source without a face":
        source = bad = grey_png(tmp_path / "grey.png")
    elif case == "text file as driver":
        driver = bad = tmp_path / "talk.mp4"
        driver.write_text("not a video\n")
    else:
        driver = bad = SOURCE
    result = animate(weights, source, driver, "-o", out_dir / "out.mp4", "--max-frames", 2)
    assert_one_clean_error(result, names=str(bad))
    assert message in result.error_lines[0]
    assert files_in(out_dir) == []


def test_animate_driver_without_any_face_is_one_clean_error(weights, faceless_video, out_dir):
    result = animate(weights, SOURCE, faceless_video, "-o", out_dir / "out.mp4")
    assert_one_clean_error(result, names=str(faceless_video))
    assert "no face found in any of its 10 frames" in result.error_lines[0]
    assert files_in(out_dir) == []


def test_animate_output_inside_a_file_is_one_clean_error(weights, out_dir):
    blocker = out_dir / "not-a-folder"
    blocker.write_text("")
    result = animate(weights, SOURCE, DRIVER, "-o", blocker / "out.mp4", "--max-frames", 2)
    assert_one_clean_error(result, names=str(blocker))
    assert files_in(out_dir) == ["not-a-folder"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_animate_output_folder_not_writable_is_one_clean_error(weights, out_dir):
    out_dir.chmod(0o500)
    try:
        result = animate(weights, SOURCE, DRIVER, "-o", out_dir / "out.mp4", "--max-frames", 2)
    finally:
        out_dir.chmod(0o700)
    assert_one_clean_error(result, names=str(out_dir))
    assert "not writable" in result.error_lines[0]
    assert files_in(out_dir) == []


def test_animate_output_folder_reported_unwritable_is_one_clean_error(weights, out_dir, monkeypatch):
    """The same check as above, also as root: the OS says the folder cannot be written."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != out_dir and real_access(path, mode))
    result = animate(weights, SOURCE, DRIVER, "-o", out_dir / "out.mp4", "--max-frames", 2)
    assert_one_clean_error(result, names=str(out_dir))
    assert "not writable" in result.error_lines[0]
    assert files_in(out_dir) == []


def test_animate_one_source_with_an_output_folder_writes_into_it(weights, out_dir):
    """``-o DIR`` with a single photo (examples/batch.sh with one portrait) names the video SOURCE__DRIVING.mp4."""
    result = animate(weights, SOURCE, DRIVER, "-o", out_dir, "--max-frames", 2, "-q")
    assert result.code == 0, result.err
    assert result.out == f"{out_dir / 'source__driving.mp4'}\n"
    assert files_in(out_dir) == ["source__driving.mp4"]


def test_animate_needs_a_source_and_a_driver(weights, out_dir):
    result = animate(weights, DRIVER, "-o", out_dir / "out.mp4")
    assert_one_clean_error(result, names="SOURCE")
    assert files_in(out_dir) == []


def test_animate_single_output_must_end_in_mp4(weights, out_dir):
    output = out_dir / "out.avi"
    result = animate(weights, SOURCE, DRIVER, "-o", output, "--max-frames", 2)
    assert_one_clean_error(result, names=str(output))
    assert ".mp4" in result.error_lines[0]
    assert files_in(out_dir) == []


def test_animate_batch_output_folder_inside_a_file_is_one_clean_error(weights, batch_sources, out_dir):
    blocker = out_dir / "not-a-folder"
    blocker.write_text("")
    result = animate(weights, batch_sources["a"], batch_sources["b"], DRIVER, "-o", blocker / "videos")
    assert_one_clean_error(result, names=str(blocker))
    assert files_in(out_dir) == ["not-a-folder"]


# -------------------------------------------------------------------------------------- animate: interrupts


@pytest.mark.parametrize("existing", [False, True], ids=["new output", "existing output"])
def test_animate_ctrl_c_while_writing_leaves_no_partial_file(weights, out_dir, monkeypatch, existing):
    output = out_dir / "out.mp4"
    if existing:
        output.write_bytes(b"an earlier result")
    real_write = VideoWriter.write
    written = []

    def write_then_interrupt(self, frame):
        if len(written) == 3:
            raise KeyboardInterrupt
        real_write(self, frame)
        written.append(frame)

    monkeypatch.setattr(VideoWriter, "write", write_then_interrupt)
    result = animate(weights, SOURCE, DRIVER, "-o", output, "--max-frames", 6, "-q")
    assert result.code == 130
    assert result.error_lines == ["Error: interrupted"]
    assert "Traceback" not in result.err
    assert len(written) == 3
    assert files_in(out_dir) == (["out.mp4"] if existing else [])
    if existing:
        assert output.read_bytes() == b"an earlier result"


# ---------------------------------------------------------------------------------------------- novel-view


def novel_view(weights: Path, *args: object) -> CliResult:
    return invoke("novel-view", SOURCE, *args, "--weights", weights, "-q")


@pytest.fixture(scope="module")
def views(weights, tmp_path_factory) -> dict[str, np.ndarray]:
    """Single views at yaw -30, 20 and 30, and a -30:30 grid of 6 views (with its JSON summary)."""
    folder = tmp_path_factory.mktemp("views")
    images = {}
    for yaw in ("-30", "20", "30"):
        result = novel_view(weights, "--yaw", yaw, "-o", folder / f"yaw{yaw}.png")
        assert result.code == 0, result.err
        assert result.out == f"{folder / f'yaw{yaw}.png'}\n"
        images[yaw] = read_png(folder / f"yaw{yaw}.png")
    result = novel_view(weights, "--yaw", "-30:30", "--frames", 6, "-o", folder / "grid.png", "--json")
    assert result.code == 0, result.err
    images["grid"] = read_png(folder / "grid.png")
    images["summary"] = json.loads(result.out)
    return images


def test_novel_view_single_angle_writes_one_image_of_the_models_size(views):
    assert views["20"].shape == (RESOLUTION, RESOLUTION, 3)


def test_novel_view_different_yaws_give_different_images(views):
    assert mean_difference(views["-30"], views["30"]) > 1.0
    assert mean_difference(views["20"], views["30"]) > 0.2


def test_novel_view_range_to_an_image_writes_a_grid_of_the_views(views):
    grid = views["grid"]
    assert grid.shape == (2 * RESOLUTION, 3 * RESOLUTION, 3)
    assert views["summary"] == {"output": views["summary"]["output"], "views": 6, "yaw": [-30.0, 30.0], "pitch": [0, 0]}
    assert np.abs(cell(grid, 0) - views["-30"]).max() <= 1, "the first view is at yaw -30"
    assert np.abs(cell(grid, 5) - views["30"]).max() <= 1, "the last view is at yaw 30"


def test_novel_view_range_to_mp4_writes_an_orbit_video(weights, out_dir):
    output = out_dir / "orbit.mp4"
    result = novel_view(weights, "--yaw", "-30:30", "--frames", 6, "-o", output)
    assert result.code == 0, result.err
    frames = decode(output)
    assert frames.shape == (6, RESOLUTION, RESOLUTION, 3)
    assert mean_difference(frames[0], frames[-1]) > 1.0


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (("--yaw", "100"), "±90"),
        (("--yaw", "abc"), "--yaw"),
        (("--pitch", "-61:0"), "±60"),
        (("--yaw", "1:2:3"), "--yaw"),
        (("--yaw", "nan"), "--yaw"),
    ],
    ids=" ".join,
)
def test_novel_view_bad_angles_are_one_clean_error(weights, out_dir, args, names):
    result = novel_view(weights, *args, "-o", out_dir / "view.png")
    assert_one_clean_error(result, names=names)
    assert files_in(out_dir) == []


def test_novel_view_single_angle_to_mp4_is_one_clean_error(weights, out_dir):
    result = novel_view(weights, "--yaw", "20", "-o", out_dir / "view.mp4")
    assert_one_clean_error(result, names="--yaw -30:30")
    assert files_in(out_dir) == []


def test_novel_view_expression_from_another_photo(weights, tmp_path, out_dir):
    mirrored = tmp_path / "mirrored.png"
    Image.open(SOURCE).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored)
    output = out_dir / "view.png"
    result = novel_view(weights, "--yaw", "20", "--expression-from", mirrored, "-o", output)
    assert result.code == 0, result.err
    assert read_png(output).shape == (RESOLUTION, RESOLUTION, 3)


def test_novel_view_expression_from_a_motion_file_takes_beta_per_frame(weights, motion_file, out_dir):
    plain, driven = out_dir / "plain.png", out_dir / "driven.png"
    for output, extra in ((plain, ()), (driven, ("--expression-from", motion_file))):
        result = novel_view(weights, "--yaw", "-30:30", "--frames", 6, "-o", output, *extra)
        assert result.code == 0, result.err
    assert read_png(driven).shape == (2 * RESOLUTION, 3 * RESOLUTION, 3)
    assert mean_difference(read_png(plain), read_png(driven)) > 0.25, "the driver's β is not the source's"


# --------------------------------------------------------------------------------------------- sweep-basis


def sweep_basis(weights: Path, *args: object) -> CliResult:
    return invoke("sweep-basis", SOURCE, *args, "--weights", weights, "-q")


@pytest.fixture(scope="module")
def sweep(weights, tmp_path_factory) -> tuple[CliResult, np.ndarray]:
    output = tmp_path_factory.mktemp("sweep") / "s.png"
    result = sweep_basis(weights, "--index", 2, "--range", "1:10", "--steps", 5, "-o", output, "--json")
    assert result.code == 0, result.err
    return result, read_png(output)


def test_sweep_basis_grid_has_one_cell_per_step(sweep):
    _, grid = sweep
    assert grid.shape == (2 * RESOLUTION, 3 * RESOLUTION, 3)
    assert (cell(grid, 5) == 0).all(), "five views in a 3×2 grid leave the last cell blank"
    assert all(cell(grid, index).std() > 5 for index in range(5))


def test_sweep_basis_json_reports_the_index_and_the_values(sweep):
    result, _ = sweep
    summary = json.loads(result.out)
    assert set(summary) == {"output", "index", "values", "range", "source_lambda"}
    assert summary["index"] == 2 and summary["range"] == "given"
    np.testing.assert_allclose(summary["values"], np.linspace(1.0, 10.0, 5), rtol=1e-6)
    assert isinstance(summary["source_lambda"], float) and np.isfinite(summary["source_lambda"])


def test_sweep_basis_different_values_give_different_frames(sweep):
    _, grid = sweep
    for index in range(4):
        assert mean_difference(cell(grid, index), cell(grid, index + 1)) > 5


def test_sweep_basis_by_default_sweeps_the_span_faces_give_the_coefficient(weights, out_dir):
    from export3d_cli.models.weights_io import load_model

    result = sweep_basis(weights, "--index", 1, "--steps", 4, "-o", out_dir / "s.png", "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    low, high = load_model(weights).expression_encoder.coefficient_span()
    assert summary["range"] == "auto"
    np.testing.assert_allclose(summary["values"], np.linspace(float(low[1]), float(high[1]), 4), rtol=1e-5)


def test_sweep_basis_with_expression_planes_sweeps_the_training_spread(tmp_path, out_dir):
    """Weights with expression tri-planes know how each λ spreads over their training frames: auto sweeps mean ±
    2.5 standard deviations (the single-blendshape span lies far outside it, where the planes break the face)."""
    tiny = preset("tiny")
    config = dataclasses.replace(tiny, generator=dataclasses.replace(tiny.generator, expression_planes=True))
    torch.manual_seed(0)
    model = Export3D(config)
    planes = model.generator.expression_planes
    with torch.no_grad():
        basis = model.expression_encoder.basis()
        planes.set_coordinates(basis, 0.3 + 0.05 * torch.randn(64, basis.shape[1]))
    model.save_pretrained(tmp_path / "w")
    result = sweep_basis(tmp_path / "w", "--index", 1, "--steps", 3, "-o", out_dir / "s.png", "--json")
    assert result.code == 0, result.err
    mean, std = float(planes.coefficient_mean[1]), float(planes.coefficient_std[1])
    assert 0.2 < mean < 0.4 and 0.02 < std < 0.08
    np.testing.assert_allclose(json.loads(result.out)["values"], [mean - 2.5 * std, mean, mean + 2.5 * std], rtol=1e-5)


def test_blendshapes_along_moves_the_swept_coefficient_alone_to_first_order():
    """β + J⁺ e_i Δλ: for small steps λ_i moves by Δλ and the other coefficients stay (J J⁺ = I for J of full row
    rank); far out the blendshapes are clamped to [0, 1]."""
    from export3d_cli.cli.sweep_basis import blendshapes_along

    torch.manual_seed(0)
    model = Export3D(preset("tiny")).eval()
    encoder = model.expression_encoder
    with torch.no_grad():
        for layer in encoder.coefficients:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.normal_(0, 0.3)
    beta = 0.3 + 0.2 * torch.rand(1, 52)
    own = encoder.coefficients_of(beta)[0]
    values = own[2] + torch.tensor([-1e-3, 0.0, 1e-3])
    with torch.no_grad():
        moved = encoder.coefficients_of(blendshapes_along(model, beta, 2, values))
    change = moved - own
    torch.testing.assert_close(change[:, 2], values - own[2], atol=2e-5, rtol=0)
    others = torch.cat([change[:, :2], change[:, 3:]], dim=1)
    assert others.abs().max() < 2e-5, others
    far = blendshapes_along(model, beta, 2, own[2] + torch.tensor([-1e3, 1e3]))
    assert far.min() >= 0 and far.max() <= 1 and (far == 0).any() and (far == 1).any()


def test_sweep_basis_with_blendshape_planes_moves_the_planes_with_the_sweep(tmp_path, out_dir):
    """Planes on β's principal components follow the swept λ through β (``blendshapes_along``): the tiles change
    with the planes' directions, and not without them."""
    tiny = preset("tiny")
    generator = dataclasses.replace(tiny.generator, expression_planes=True, expression_planes_coordinates="blendshapes")
    torch.manual_seed(0)
    model = Export3D(dataclasses.replace(tiny, generator=generator))
    planes = model.generator.expression_planes
    with torch.no_grad():
        n = planes.basis.shape[1]
        planes.set_coordinates(torch.linalg.qr(torch.randn(52, n)).Q, 0.5 * torch.randn(64, n))
    model.save_pretrained(tmp_path / "still")
    with torch.no_grad():
        planes.directions.normal_(0, 2.0)
    model.save_pretrained(tmp_path / "moving")
    sweeps = {}
    for name in ("still", "moving"):
        output = out_dir / f"{name}.mp4"
        result = sweep_basis(tmp_path / name, "--index", 0, "--steps", 3, "--range", "-2:2", "-o", output)
        assert result.code == 0, result.err
        frames = np.stack(list(read_video_frames(output))).astype(float)
        sweeps[name] = frames[-1] - frames[0]  # the captions differ alike in both
    # Only a β that changes along the sweep makes the planes' offset differ between the first and the last tile.
    difference = np.abs(sweeps["moving"] - sweeps["still"]).mean()
    assert difference > 3.0, difference


def test_sweep_basis_measure_reports_faces_per_tile_and_the_moves(weights, out_dir):
    result = sweep_basis(weights, "--index", 0, "--steps", 3, "-o", out_dir / "s.png", "--measure", "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert len(summary["face_found"]) == 3 and all(isinstance(found, bool) for found in summary["face_found"])
    assert isinstance(summary["moves"], list)
    text = sweep_basis(weights, "--index", 0, "--steps", 3, "-o", out_dir / "t.png", "--measure")
    assert text.code == 0 and "tiles" in text.out


def test_sweep_basis_to_mp4_writes_one_frame_per_step(weights, out_dir):
    output = out_dir / "s.mp4"
    result = sweep_basis(weights, "--index", 2, "--steps", 5, "-o", output)
    assert result.code == 0, result.err
    assert result.out == f"{output}\n"
    assert decode(output).shape == (5, RESOLUTION, RESOLUTION, 3)


def test_sweep_basis_single_value_range_repeats_one_value(weights, out_dir):
    output = out_dir / "s.png"
    result = sweep_basis(weights, "--index", 0, "--range", 3, "--steps", 3, "-o", output, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["values"] == [3.0, 3.0, 3.0]
    grid = read_png(output)
    assert grid.shape == (2 * RESOLUTION, 2 * RESOLUTION, 3), "three views: a 2×2 grid"
    assert np.array_equal(cell(grid, 0, 2), cell(grid, 1, 2)) and np.array_equal(cell(grid, 1, 2), cell(grid, 2, 2))


@pytest.mark.parametrize("index", [4, 9, -1])
def test_sweep_basis_index_out_of_range_names_the_basis_size(weights, out_dir, index):
    result = sweep_basis(weights, "--index", index, "-o", out_dir / "s.png")
    assert_one_clean_error(result, names="n = 4")
    assert files_in(out_dir) == []


def test_sweep_basis_needs_clebs_weights(direct_weights, out_dir):
    result = sweep_basis(direct_weights, "--index", 0, "-o", out_dir / "s.png")
    assert_one_clean_error(result, names="CLeBS")
    assert files_in(out_dir) == []


def test_sweep_basis_bad_output_suffix_is_one_clean_error(weights, out_dir):
    output = out_dir / "s.gif"
    result = sweep_basis(weights, "--index", 0, "-o", output)
    assert_one_clean_error(result, names=str(output))
    assert files_in(out_dir) == []
