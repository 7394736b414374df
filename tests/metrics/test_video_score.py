"""score_video on real decoded video: identities of the metric (a video against itself) and metamorphic checks."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from conftest import EXAMPLE_PHOTO, write_video

from export3d_cli.errors import InputError
from export3d_cli.media.video_reader import VideoReader
from export3d_cli.metrics.video_score import score_video

EXAMPLE_DRIVING = Path(__file__).resolve().parents[2] / "examples" / "driving.mp4"
SHIFT = 25  # frames: one second of the 25 fps example


def test_a_video_scored_against_itself_is_perfect(driving_video):
    summary = score_video(
        driving_video.path, source=EXAMPLE_PHOTO, driver=driving_video.path, reference=driving_video.path
    )
    faces = int(driving_video.valid_mask.sum())
    assert summary["frames"] == driving_video.frames
    assert summary["face_found"] == pytest.approx(faces / driving_video.frames)
    # The grey frames have no face on either side: left out of AED/APD/r/AKD, and counted.
    assert summary["expression_pairs"] == summary["akd_pairs"] == faces
    assert summary["driving_missing"] == summary["reference_missing"] == len(driving_video.faceless_frames)
    assert summary["aed"] == 0.0 and summary["apd"] == 0.0 and summary["akd"] == 0.0
    defined = [r for r in summary["expression_r"].values() if r is not None]
    assert defined and all(r == pytest.approx(1.0) for r in defined)
    assert summary["psnr"] > 100 and summary["ssim"] == pytest.approx(1.0)
    # The same face as the photo it was made from, and as the driver's first face.
    assert summary["csim_source"] > 0.8 and summary["csim_driver"] > 0.8  # strangers score <= 0.42 (test_identity)


@pytest.fixture(scope="module")
def example_frames() -> list[np.ndarray]:
    with VideoReader(EXAMPLE_DRIVING) as reader:
        return list(reader)


def _heavily_reencoded(frames: list[np.ndarray], path: Path) -> Path:
    height, width = frames[0].shape[:2]
    writer = imageio_ffmpeg.write_frames(
        str(path), (width, height), fps=25, codec="libx264", output_params=["-crf", "36"], ffmpeg_log_level="error"
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


@pytest.mark.slow
def test_a_one_second_time_shift_scores_worse_than_heavy_reencoding(example_frames, tmp_path):
    truth = write_video(tmp_path / "truth.mp4", example_frames[SHIFT : SHIFT + 50])
    reencoded = _heavily_reencoded(example_frames[SHIFT : SHIFT + 50], tmp_path / "reencoded.mp4")
    shifted = write_video(tmp_path / "shifted.mp4", example_frames[:50])
    degraded = score_video(reencoded, source=EXAMPLE_PHOTO, driver=truth, reference=truth)
    late = score_video(shifted, source=EXAMPLE_PHOTO, driver=truth, reference=truth)
    assert degraded["psnr"] < 40  # the re-encoding really did damage the pixels
    assert late["akd"] > 2 * degraded["akd"]
    assert late["aed"] > 2 * degraded["aed"]
    assert late["apd"] > degraded["apd"]
    assert late["expression_r"]["jaw"] < degraded["expression_r"]["jaw"]


def test_a_source_without_a_face_is_an_input_error(driving_video, tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(blank)
    with pytest.raises(InputError, match=r"blank\.png: no face found"):
        score_video(driving_video.path, source=blank, driver=driving_video.path)


def test_a_smaller_generated_video_is_resized_to_the_reference(driving_video, tmp_path):
    """A half-size copy of the truth: compared at the reference's size, keypoints land within a pixel or two."""
    import cv2

    with VideoReader(driving_video.path) as reader:
        half = [cv2.resize(frame, (128, 128), interpolation=cv2.INTER_AREA) for frame in reader]
    small = write_video(tmp_path / "small.mp4", half)
    summary = score_video(small, source=EXAMPLE_PHOTO, driver=driving_video.path, reference=driving_video.path)
    assert summary["frames"] == driving_video.frames
    assert summary["akd"] < 2.0 and summary["psnr"] > 25
