"""export3d score: the --json keys, the text table, and bad inputs (one line, exit 2)."""

from __future__ import annotations

import json

import pytest
from cli_support import assert_one_clean_error, invoke
from conftest import EXAMPLE_PHOTO

SCORE_KEYS = ["frames", "face_found", "csim_source", "csim_driver", "aed", "apd", "expression_r"]


def test_score_json_has_exactly_the_documented_keys(driving_video):
    result = invoke("score", driving_video.path, "--source", EXAMPLE_PHOTO, "--driver", driving_video.path, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert list(summary) == SCORE_KEYS
    assert set(summary["expression_r"]) == {"jaw", "smile", "blink", "brow"}
    assert summary["frames"] == driving_video.frames and summary["aed"] == 0.0


def test_score_with_a_reference_adds_psnr_ssim_and_akd(driving_video):
    path = driving_video.path
    result = invoke("score", path, "--source", EXAMPLE_PHOTO, "--driver", path, "--reference", path, "--json", "-q")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert list(summary) == [*SCORE_KEYS, "psnr", "ssim", "akd"]
    assert summary["akd"] == 0.0 and summary["ssim"] == pytest.approx(1.0)


def test_score_text_names_each_metric_and_the_frames_left_out(driving_video):
    result = invoke("score", driving_video.path, "--source", EXAMPLE_PHOTO, "--driver", driving_video.path, "-q")
    assert result.code == 0, result.err
    for label in ("face found", "CSIM source (dlib ResNet)", "AED", "APD", "expression r", "left out"):
        assert label in result.out
    missing = len(driving_video.faceless_frames)
    assert f"left out                 {missing} of {driving_video.frames} frames" in result.out


def test_score_missing_generated_video_is_one_clean_error(tmp_path, driving_video):
    missing = tmp_path / "nope.mp4"
    result = invoke("score", missing, "--source", EXAMPLE_PHOTO, "--driver", driving_video.path)
    assert_one_clean_error(result, names="nope.mp4")


def test_score_source_that_is_not_an_image_is_one_clean_error(tmp_path, driving_video):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    result = invoke("score", driving_video.path, "--source", text, "--driver", driving_video.path)
    assert_one_clean_error(result, names="notes.png")


def test_score_driver_that_is_not_a_video_is_one_clean_error(tmp_path, driving_video):
    text = tmp_path / "driver.mp4"
    text.write_text("not a video")
    result = invoke("score", driving_video.path, "--source", EXAMPLE_PHOTO, "--driver", text)
    assert_one_clean_error(result, names="driver.mp4")


def test_score_source_without_a_face_is_one_clean_error(driving_video, tmp_path):
    from PIL import Image

    grey = tmp_path / "grey.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(grey)
    result = invoke("score", driving_video.path, "--source", grey, "--driver", driving_video.path)
    assert_one_clean_error(result, names="grey.png: no face found")


def test_score_requires_source_and_driver(driving_video):
    result = invoke("score", driving_video.path)
    assert result.code == 2


def test_a_generated_video_without_faces_scores_zero_faces_and_no_face_metrics(faceless_video, driving_video):
    result = invoke("score", faceless_video, "--source", EXAMPLE_PHOTO, "--driver", driving_video.path, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert summary["face_found"] == 0.0
    assert summary["csim_source"] is summary["aed"] is summary["apd"] is None
    assert set(summary["expression_r"].values()) == {None}


def test_score_warns_when_the_driver_is_longer_and_when_decoding_stops_early(driving_video, truncated_video):
    result = invoke("score", truncated_video, "--source", EXAMPLE_PHOTO, "--driver", driving_video.path, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)
    assert 0 < summary["frames"] < driving_video.frames
    warnings = [line for line in result.err.splitlines() if line.startswith("Warning:")]
    assert any("truncated.mkv: decoding stopped early" in line for line in warnings), result.err
    assert any(f"driving.mp4: about {driving_video.frames} frames; only the first" in line for line in warnings)
    quiet = invoke("score", truncated_video, "--source", EXAMPLE_PHOTO, "--driver", driving_video.path, "-q")
    assert "Warning" not in quiet.err
