"""Hostile and careless inputs (issue: reliability). Each case ends in exit 2 with one clear line, or works; no input
is ever modified."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import assert_one_clean_error, invoke
from conftest import EXAMPLE_PHOTO


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def photo(tmp_path) -> Path:
    return Path(shutil.copy(EXAMPLE_PHOTO, tmp_path / "p.png"))


@pytest.fixture
def driver(tmp_path, driving_video) -> Path:
    return Path(shutil.copy(driving_video.path, tmp_path / "drv.mp4"))


def test_animate_refuses_to_write_over_its_driving_video(photo, driver):
    before = _digest(driver)
    result = invoke("animate", photo, driver, "-o", driver)
    assert_one_clean_error(result, names="is also an input")
    assert _digest(driver) == before


def test_novel_view_refuses_to_write_over_its_source_photo(photo):
    before = _digest(photo)
    result = invoke("novel-view", photo, "--yaw", 20, "-o", photo)
    assert_one_clean_error(result, names="is also an input")
    assert _digest(photo) == before


@pytest.mark.parametrize("link", ["symlink", "hardlink"])
def test_an_output_that_is_an_input_under_another_name_is_refused(photo, tmp_path, link):
    other_name = tmp_path / "other.png"
    (os.symlink if link == "symlink" else os.link)(photo, other_name)
    before = _digest(photo)
    result = invoke("novel-view", photo, "--yaw", 20, "-o", other_name)
    assert_one_clean_error(result, names="is also an input")
    assert _digest(photo) == before


def test_sweep_basis_and_extract_refuse_their_inputs_as_output(photo, driver, tmp_path):
    before = _digest(photo)
    assert_one_clean_error(invoke("sweep-basis", photo, "--index", 0, "-o", photo), names="is also an input")
    assert _digest(photo) == before
    motion = tmp_path / "motion.npz"
    motion.write_bytes(b"not really a motion file")
    assert_one_clean_error(invoke("extract", motion, "-o", motion), names="is also an input")
    assert motion.read_bytes() == b"not really a motion file"


def _run(*args: object, timeout: float = 120) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with a deadline, so a regression that blocks fails instead of hanging the suite."""
    env = {key: value for key, value in os.environ.items() if key != "EXPORT3D_DEBUG"}
    return subprocess.run(
        [sys.executable, "-m", "export3d_cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def _assert_one_error(result: subprocess.CompletedProcess, names: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 2 and len(errors) == 1 and names in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_fifo_as_source_or_driver_is_refused_without_blocking(photo, driver, tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    _assert_one_error(_run("novel-view", fifo, "--yaw", 10, "-o", tmp_path / "out.png"), "pipe.png: not a regular file")
    _assert_one_error(_run("animate", fifo, driver, "-o", tmp_path / "o.mp4"), "pipe.png: not a regular file")
    _assert_one_error(_run("animate", photo, fifo, "-o", tmp_path / "o.mp4"), "pipe.png: not a regular file")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_device_as_driver_or_source_is_refused_without_reading_it(photo, tmp_path):
    for device in ("/dev/zero", "/dev/urandom"):
        _assert_one_error(_run("animate", photo, device, "-o", tmp_path / "o.mp4", timeout=60), "not a regular file")
        _assert_one_error(_run("novel-view", device, "--yaw", 5, "-o", tmp_path / "o.png"), "not a regular file")


def test_a_symlink_loop_is_named_as_one(photo, tmp_path):
    loop = tmp_path / "loop.png"
    os.symlink(loop, loop)
    result = invoke("novel-view", loop, "--yaw", 5, "-o", tmp_path / "o.png")
    assert_one_clean_error(result, names="loop.png: symlink loop")


def test_infinite_smoothing_is_refused_before_the_video_is_analysed(driver, tmp_path):
    result = invoke("extract", driver, "-o", tmp_path / "m.npz", "--smoothing", "inf")
    assert_one_clean_error(result, names="--smoothing must be a finite number")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("command", ["train-clebs", "train"])
def test_an_infinite_learning_rate_is_refused(command, tmp_path):
    result = invoke(command, tmp_path, "-o", tmp_path / "run", "--lr", "inf", "--json")
    assert_one_clean_error(result, names="--lr must be a finite number")
    assert result.out == ""  # no "NaN" pseudo-JSON on stdout


def test_evaluate_with_no_test_clips_is_an_input_error(tmp_path):
    import json

    from export3d_cli.config import preset
    from export3d_cli.models.export3d import Export3D

    weights = Export3D(preset("tiny")).save_pretrained(tmp_path / "model")
    dataset = tmp_path / "data"
    dataset.mkdir()
    manifest = {
        "format": "export3d-dataset",
        "version": 1,
        "resolution": 64,
        "fps": 25.0,
        "expression": {"kind": "mediapipe-blendshapes", "dim": 52},
        "clips": [],
    }
    (dataset / "manifest.json").write_text(json.dumps(manifest))
    result = invoke("evaluate", weights, dataset, "--json", "-q")
    assert_one_clean_error(result, names="no test clips to evaluate")


def test_library_warnings_do_not_reach_the_user_unless_debugging(monkeypatch, capsys):
    import warnings

    import typer

    from export3d_cli.cli.app import run

    noisy = typer.Typer()

    @noisy.command()
    def shout() -> None:
        warnings.warn("overflow encountered in exp", RuntimeWarning, stacklevel=1)
        print("done")

    monkeypatch.delenv("EXPORT3D_DEBUG", raising=False)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert run([], application=noisy) == 0
    assert shown == [] and capsys.readouterr().out == "done\n"
    monkeypatch.setenv("EXPORT3D_DEBUG", "1")
    with pytest.warns(RuntimeWarning, match="overflow"):
        assert run([], application=noisy) == 0


def test_a_bad_weights_environment_variable_is_named_in_the_error(photo, tmp_path, monkeypatch):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    monkeypatch.setenv("EXPORT3D_WEIGHTS", str(empty))
    result = invoke("novel-view", photo, "--yaw", 10, "-o", tmp_path / "o.png")
    assert_one_clean_error(result, names=f"$EXPORT3D_WEIGHTS={empty}: ")


def test_a_source_that_is_not_an_image_fails_before_the_driver_is_analysed(driver, tmp_path, monkeypatch):
    from export3d_cli.pipeline import driving

    def analysed_anyway(*args, **kwargs):
        raise AssertionError("the driver was analysed before the source was checked")

    monkeypatch.setattr(driving, "load_driving", analysed_anyway)
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    result = invoke("animate", text, driver, "-o", tmp_path / "o.mp4")
    assert_one_clean_error(result, names="notes.jpg: not an image")


def test_a_motion_file_missing_a_key_says_so_instead_of_not_a_video(photo, tmp_path):
    import numpy as np

    broken = tmp_path / "motion.npz"
    np.savez(broken, version=np.int64(1), expression=np.zeros((3, 52), np.float32))
    result = invoke("animate", photo, broken, "-o", tmp_path / "o.mp4")
    assert_one_clean_error(result, names="not an export3d motion file (missing camera")


def test_animate_says_when_the_driving_video_stopped_decoding_early(photo, truncated_video, tmp_path):
    result = invoke("animate", photo, truncated_video, "-o", tmp_path / "o.mp4")
    assert result.code == 0, result.err
    warnings = [line for line in result.err.splitlines() if line.startswith("Warning:")]
    assert any("truncated.mkv: decoding stopped early after" in line for line in warnings), result.err


def _avi_cut_before_frame(source: Path, destination: Path, frame: int) -> Path:
    """Copy ``source`` up to the start of chunk ``frame`` of its ``movi`` list: a download cut between frames.

    Every chunk before the cut is whole, so the decoder has nothing to complain about.
    """
    data = source.read_bytes()
    position = data.index(b"movi") + 4
    for _ in range(frame):
        size = int.from_bytes(data[position + 4 : position + 8], "little")
        position += 8 + size + (size & 1)
    destination.write_bytes(data[:position])
    return destination


def test_a_cut_avi_is_reported_even_though_ffmpeg_decodes_it_without_complaint(tmp_path):
    import imageio_ffmpeg
    from conftest import FACELESS_FRAMES, face_frames, rotation_angles

    frames = face_frames(rotation_angles(), FACELESS_FRAMES)
    writer = imageio_ffmpeg.write_frames(
        str(tmp_path / "full.avi"),
        (256, 256),
        fps=25.0,
        codec="mjpeg",
        pix_fmt_out="yuvj420p",
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()
    cut = _avi_cut_before_frame(tmp_path / "full.avi", tmp_path / "cut.avi", 24)  # 24 of 40 frames
    result = invoke("extract", cut, "-o", tmp_path / "m.npz", "--json")
    assert result.code == 0, result.err
    assert "cut.avi: decoding stopped early after 24 frames: stream ended after 24 of ~40 frames" in result.err
    assert '"decode_error": "stream ended after 24 of ~40 frames"' in result.out
