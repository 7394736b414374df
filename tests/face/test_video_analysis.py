"""Tests for export3d_cli.face.video_analysis on real (generated) videos of the example face.

The driving video (tests/conftest.py) turns the face in the image plane by a known angle(t) and has flat grey
frames without a face, so tracking, gap filling, smoothing and the head-pose sign can be checked against ground
truth. Analyses are shared per module: MediaPipe is the slow part.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from export3d_cli.errors import InputError
from export3d_cli.face.head_pose import NOSE_TIP, label_angles
from export3d_cli.face.video_analysis import Smoothing, VideoMotion, analyze_video, sampled_frames

GAP = slice(15, 19)  # the grey frames of the driving video
BEFORE_GAP, AFTER_GAP = 14, 19


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging: SIGALRM raises TimeoutError after ``seconds``."""

    def expire(signum, frame):
        raise TimeoutError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def rolls(motion: VideoMotion) -> np.ndarray:
    """Roll in degrees per frame [T], from the camera labels."""
    return np.array([label_angles(camera)[2] for camera in motion.camera])


def nose_in_crop(motion: VideoMotion) -> np.ndarray:
    """Where each frame's transform puts the detected nose tip [T, 2] (crop pixels)."""
    return np.stack(
        [motion.transform(t).apply(motion.landmarks[t, NOSE_TIP : NOSE_TIP + 1])[0] for t in range(motion.frames)]
    )


def tracking_lag_and_residual(roll: np.ndarray, angles: np.ndarray, valid: np.ndarray) -> tuple[int, float]:
    """The delay (frames) at which ``roll`` best matches ``angles`` + a constant, and the RMS residual at no delay."""

    def residual(delay: int) -> float:
        times = np.arange(delay, len(roll))
        times = times[valid[times] & valid[times - delay]]
        difference = roll[times] - angles[times - delay]
        return float(np.sqrt(np.mean((difference - difference.mean()) ** 2)))

    residuals = [residual(delay) for delay in range(8)]
    return int(np.argmin(residuals)), residuals[0]


@pytest.fixture(scope="module")
def default_motion(driving_video) -> VideoMotion:
    return analyze_video(driving_video.path)


@pytest.fixture(scope="module")
def unsmoothed_motion(driving_video) -> VideoMotion:
    return analyze_video(driving_video.path, smoothing=Smoothing(0))


@pytest.fixture(scope="module")
def heavily_smoothed_motion(driving_video) -> VideoMotion:
    return analyze_video(driving_video.path, smoothing=Smoothing(4))


def test_analysis_counts_frames_and_marks_only_faceless_frames_invalid(default_motion, driving_video):
    motion = default_motion
    assert motion.frames == driving_video.frames == 40
    assert motion.fps == 25.0
    assert motion.missing == 4
    np.testing.assert_array_equal(motion.valid, driving_video.valid_mask)
    np.testing.assert_array_equal(motion.frame_indices, np.arange(40))
    assert motion.decode_error is None
    assert motion.source == str(Path(driving_video.path).resolve())
    assert motion.resolution == 256


def test_analysis_arrays_have_documented_shapes_and_dtypes(default_motion):
    motion = default_motion
    assert motion.expression.shape == (40, 52) and motion.expression.dtype == np.float32
    assert motion.camera.shape == (40, 25) and motion.camera.dtype == np.float32
    assert motion.landmarks.shape == (40, 478, 2) and motion.landmarks.dtype == np.float32
    assert motion.transforms.shape == (40, 2, 3) and motion.transforms.dtype == np.float64
    assert motion.valid.dtype == np.bool_
    for array in (motion.expression, motion.camera, motion.landmarks, motion.transforms):
        assert np.isfinite(array).all()


def test_motion_keeps_the_signals_a_motion_file_needs(default_motion):
    motion = default_motion.motion()
    assert motion.frames == 40 and motion.fps == 25.0 and motion.source == default_motion.source
    np.testing.assert_array_equal(motion.expression, default_motion.expression)
    np.testing.assert_array_equal(motion.camera, default_motion.camera)
    np.testing.assert_array_equal(motion.valid, default_motion.valid)


def test_gap_expression_is_linear_interpolation_between_neighbours_without_smoothing(unsmoothed_motion):
    expression = unsmoothed_motion.expression.astype(np.float64)
    before, after = expression[BEFORE_GAP], expression[AFTER_GAP]
    weights = (np.arange(15, 19) - BEFORE_GAP)[:, None] / (AFTER_GAP - BEFORE_GAP)
    np.testing.assert_allclose(expression[GAP], before + weights * (after - before), atol=1e-6)
    assert expression[GAP].max() > 0.05, "the gap must carry the neighbours' expression, not zeros"


def test_gap_camera_lies_between_neighbours_without_smoothing(unsmoothed_motion):
    camera = unsmoothed_motion.camera
    low = np.minimum(camera[BEFORE_GAP], camera[AFTER_GAP]) - 1e-3
    high = np.maximum(camera[BEFORE_GAP], camera[AFTER_GAP]) + 1e-3
    assert ((camera[GAP] >= low) & (camera[GAP] <= high)).all()
    roll = rolls(unsmoothed_motion)
    # The face turns clockwise through the gap: the filled roll steps down strictly between its neighbours.
    steps = np.diff(roll[BEFORE_GAP : AFTER_GAP + 1])
    assert (steps < 0).all(), roll[BEFORE_GAP : AFTER_GAP + 1]


def test_gap_is_filled_from_neighbours_with_default_smoothing(default_motion):
    window = slice(10, 24)
    valid = default_motion.valid[window]
    expression = default_motion.expression[window][valid]
    gap = default_motion.expression[GAP]
    assert (gap >= expression.min(axis=0) - 0.01).all() and (gap <= expression.max(axis=0) + 0.01).all()
    assert gap.max() > 0.05
    roll = rolls(default_motion)
    neighbours = roll[window][valid]
    assert (roll[GAP] > neighbours.min() - 0.5).all() and (roll[GAP] < neighbours.max() + 0.5).all()


@pytest.mark.parametrize("motion_name", ["unsmoothed_motion", "default_motion"])
def test_roll_follows_in_plane_rotation_plus_the_photos_own_roll(motion_name, driving_video, request):
    motion = request.getfixturevalue(motion_name)
    valid = motion.valid
    roll, angles = rolls(motion)[valid], driving_video.angles[valid]
    # cv2's positive angle turns the picture anticlockwise; roll > 0 means the face appears turned anticlockwise.
    assert np.corrcoef(roll, angles)[0, 1] > 0.95
    slope, offset = np.polyfit(angles, roll, 1)
    assert 0.8 < slope < 1.2
    assert -5.0 < offset < -1.0, "the example photo's head is tilted by about -3 degrees"


def test_smoothing_off_tracks_rotation_tighter_than_heavy_smoothing(
    unsmoothed_motion, heavily_smoothed_motion, driving_video
):
    angles, valid = driving_video.angles, driving_video.valid_mask
    lag_off, residual_off = tracking_lag_and_residual(rolls(unsmoothed_motion), angles, valid)
    lag_heavy, residual_heavy = tracking_lag_and_residual(rolls(heavily_smoothed_motion), angles, valid)
    assert lag_off == 0
    assert lag_heavy > lag_off
    assert residual_off < 1.0
    assert residual_heavy > 2 * residual_off


@pytest.mark.parametrize("motion_name", ["unsmoothed_motion", "default_motion", "heavily_smoothed_motion"])
def test_expressions_are_probabilities(motion_name, request):
    expression = request.getfixturevalue(motion_name).expression
    assert expression.min() >= 0.0 and expression.max() <= 1.0
    assert expression.max() > 0.1, "a real face has some blendshapes well above zero"


@pytest.mark.parametrize("motion_name", ["unsmoothed_motion", "default_motion"])
def test_transforms_put_the_nose_tip_near_the_crop_centre(motion_name, request):
    motion = request.getfixturevalue(motion_name)
    centre = motion.resolution / 2
    offsets = np.abs(nose_in_crop(motion)[motion.valid] - centre)
    assert offsets.max() < 0.05 * motion.resolution, offsets.max(axis=0)


def test_crop_keeps_the_in_plane_rotation_that_the_camera_label_carries(unsmoothed_motion):
    # The template is the head seen through the frame's own camera, roll included, so the crop does not undo the
    # ±10° turn of the picture: the transform's angle and scale stay put while the label's roll follows the turn.
    params = np.stack([unsmoothed_motion.transform(t).params() for t in range(40)])
    crop_angles = np.degrees(params[unsmoothed_motion.valid, 1])
    scales = np.exp(params[unsmoothed_motion.valid, 0])
    assert np.ptp(crop_angles) < 1.0, crop_angles
    assert np.ptp(scales) < 0.05 * scales.mean()
    assert np.ptp(rolls(unsmoothed_motion)) > 15.0


def test_resampling_to_half_rate_keeps_the_even_frames(driving_video):
    motion = analyze_video(driving_video.path, fps=12.5)
    assert motion.frames == 20
    assert motion.fps == 12.5
    np.testing.assert_array_equal(motion.frame_indices, np.arange(0, 40, 2))
    np.testing.assert_array_equal(motion.valid, driving_video.valid_mask[::2])


def test_max_frames_limits_the_analysis(driving_video):
    motion = analyze_video(driving_video.path, max_frames=10)
    assert motion.frames == 10
    np.testing.assert_array_equal(motion.frame_indices, np.arange(10))
    assert motion.valid.all()


def test_progress_reports_every_frame_against_the_estimated_total(driving_video):
    calls: list[tuple[int, int | None]] = []
    analyze_video(driving_video.path, max_frames=6, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(done, 6) for done in range(1, 7)]


def test_video_without_a_face_is_an_input_error_naming_the_file(faceless_video):
    with pytest.raises(InputError, match="no face found in any of its 10 frames") as caught:
        analyze_video(faceless_video)
    assert caught.value.message.startswith(str(faceless_video))


def test_face_index_beyond_the_faces_present_is_an_input_error(driving_video):
    with pytest.raises(InputError, match=r"no face found in any of its 5 frames \(face index 2\)"):
        analyze_video(driving_video.path, face_index=2, max_frames=5)


def test_negative_face_index_is_an_input_error(driving_video):
    with pytest.raises(InputError, match="--face-index must be 0 or more"):
        analyze_video(driving_video.path, face_index=-1)


def test_truncated_video_yields_its_decodable_frames_with_a_decode_error(truncated_video, driving_video_mkv):
    with deadline(60):
        motion = analyze_video(truncated_video)
    assert 15 < motion.frames < 40
    assert motion.decode_error, "a stream that ends early must say so"
    np.testing.assert_array_equal(motion.valid, driving_video_mkv.valid_mask[: motion.frames])


def test_sampling_without_a_target_rate_is_the_identity():
    frames = [object() for _ in range(7)]
    sampled = list(sampled_frames(iter(frames), 25.0, None))
    assert [index for index, _ in sampled] == list(range(7))
    assert all(frame is frames[index] for index, frame in sampled)


def test_sampling_at_the_source_rate_is_the_identity():
    frames = [object() for _ in range(7)]
    sampled = list(sampled_frames(iter(frames), 25.0, 25.0))
    assert [index for index, _ in sampled] == list(range(7))
    assert all(frame is frames[index] for index, frame in sampled)


def test_downsampling_30_to_25_picks_the_nearest_frames():
    frames = list(range(30))
    sampled = list(sampled_frames(iter(frames), 30.0, 25.0))
    expected = [round(k * 30 / 25) for k in range(25)]
    assert [index for index, _ in sampled] == expected
    assert [frame for _, frame in sampled] == expected


def test_downsampling_by_two_picks_the_even_frames():
    sampled = list(sampled_frames(iter(range(9)), 25.0, 12.5))
    assert [index for index, _ in sampled] == [0, 2, 4, 6, 8]


def test_upsampling_keeps_order_and_uses_every_frame():
    indices = [index for index, _ in sampled_frames(iter(range(10)), 25.0, 50.0)]
    assert indices == sorted(indices)
    assert set(indices) == set(range(10))


def test_upsampling_25_to_50_repeats_each_frame_twice():
    indices = [index for index, _ in sampled_frames(iter(range(10)), 25.0, 50.0)]
    counts = Counter(indices)
    assert all(counts[frame] == 2 for frame in range(1, 9)), counts
    assert len(indices) >= 19


def test_analysis_without_landmarks_gives_the_same_motion_and_keeps_far_less_per_frame(driving_video, default_motion):
    """Animating and `extract` use only β and the pose: the landmarks held ~4 KB per frame at the peak."""
    import tracemalloc

    tracemalloc.start()
    try:
        lean = analyze_video(driving_video.path, landmarks=False)
        _, lean_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        full = analyze_video(driving_video.path)
        _, full_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(lean.expression, default_motion.expression)
    np.testing.assert_array_equal(lean.camera, default_motion.camera)
    np.testing.assert_array_equal(lean.valid, default_motion.valid)
    assert lean.landmarks is None and lean.transforms is None
    assert full.landmarks is not None
    frames = lean.frames
    assert full_peak - lean_peak > frames * 478 * 2 * 4, (frames, full_peak, lean_peak)


def _nearest_in_time(times: list[float], fps: float, source_fps: float) -> list[int]:
    """Brute force: output k takes the frame nearest to k / fps (ties to the later one) while k / fps is before
    the last frame's time + half a source interval."""
    relative = [t - times[0] for t in times]
    indices = []
    k = 0
    while k / fps < relative[-1] + 0.5 / source_fps:
        distances = [abs(t - k / fps) for t in relative]
        best = min(distances)
        indices.append(max(i for i, d in enumerate(distances) if d - best < 1e-12))
        k += 1
    return indices


def test_a_variable_rate_video_is_resampled_by_its_frames_own_times():
    """A burst (frames 10 ms apart) and a stall (200 ms): each output takes the frame nearest to its moment."""
    times = [0.5, 0.54, 0.58, 0.59, 0.60, 0.61, 0.81, 0.85, 0.89, 0.93]
    sampled = list(sampled_frames(iter(range(10)), 10 / 0.47, 25.0, np.array(times)))
    assert [index for index, _ in sampled] == _nearest_in_time(times, 25.0, 10 / 0.47)
    assert [index for index, _ in sampled] == [0, 1, 2, 5, 5, 5, 6, 6, 6, 7, 8, 9]  # frames 3, 4 skipped
    assert all(index == frame for index, frame in sampled)


def test_evenly_spaced_times_sample_exactly_like_the_constant_rate_rule():
    for source_fps, fps in ((30.0, 25.0), (25.0, 50.0), (25.0, 12.5), (29.97, 24.0)):
        times = np.arange(40) / source_fps + 0.123
        by_time = [index for index, _ in sampled_frames(iter(range(40)), source_fps, fps, times)]
        by_index = [index for index, _ in sampled_frames(iter(range(40)), source_fps, fps)]
        assert by_time == by_index, (source_fps, fps)


def test_frames_decoded_beyond_the_given_times_continue_at_the_average_rate():
    indices = [index for index, _ in sampled_frames(iter(range(6)), 25.0, 25.0, np.array([0.0, 0.04, 0.08]))]
    assert indices == list(range(6))


def test_analysing_a_variable_rate_video_at_a_fixed_rate_samples_by_time(driving_video_mkv, tmp_path):
    """The 40-frame driver re-stamped with frames 21-39 two intervals apart: at 25 fps the second half's frames
    each serve two outputs (an index-based resampler would have run through them at the average rate)."""
    import subprocess

    import imageio_ffmpeg

    video = tmp_path / "stall.mkv"
    retime = "setpts='(N+if(gt(N\\,20)\\,N-20\\,0))/25/TB'"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(driving_video_mkv.path)]
    subprocess.run([*cmd, "-vf", retime, "-fps_mode", "vfr", "-c:v", "ffv1", str(video)], check=True)
    motion = analyze_video(video, fps=25.0, resolution=64)
    times = [(n + max(0, n - 20)) / 25 for n in range(40)]
    assert motion.frame_indices.tolist() == _nearest_in_time(times, 25.0, 40 / (times[-1] + 0.04))
    assert motion.frames == 59 and motion.frame_times is None  # resampled to a constant rate
