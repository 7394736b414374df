"""Tests of the synthetic expression and camera trajectories (25 fps)."""

from __future__ import annotations

import numpy as np
import pytest

from export3d_cli.synth.face_rig import CONTROL_INDEX, CONTROL_NAMES
from export3d_cli.synth.trajectories import (
    EXPRESSION_ARCHETYPES,
    MAX_PITCH,
    MAX_YAW,
    camera_trajectory,
    expression_trajectory,
    held_expression_trajectory,
)

FPS = 25.0
SEEDS = range(20)
LONG = 500  # 20 s


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def runs_above(signal: np.ndarray, threshold: float) -> list[int]:
    """Lengths (frames) of the maximal runs where ``signal > threshold``."""
    runs, length = [], 0
    for above in signal > threshold:
        if above:
            length += 1
        elif length:
            runs.append(length)
            length = 0
    if length:
        runs.append(length)
    return runs


@pytest.fixture(scope="module")
def long_expressions() -> list[np.ndarray]:
    return [expression_trajectory(rng(seed), LONG, FPS) for seed in SEEDS]


@pytest.fixture(scope="module")
def long_cameras() -> list[np.ndarray]:
    return [camera_trajectory(rng(seed), LONG, FPS) for seed in SEEDS]


# ------------------------------------------------------------------------------------------------- expressions

CLIP = 24  # frames of the demo dataset's clips (about one second)
SMILE = [CONTROL_INDEX["smile_left"], CONTROL_INDEX["smile_right"]]
BLINK = [CONTROL_INDEX["blink_left"], CONTROL_INDEX["blink_right"]]


def within_clip_spread(expression_range: str, clips: int = 300) -> dict[str, float]:
    """Mean over one-second clips of each signal's max - min within the clip."""
    spreads: dict[str, list[float]] = {"jaw": [], "smile": [], "blink": [], "brow": []}
    for seed in range(clips):
        controls = expression_trajectory(rng(seed), CLIP, FPS, expression_range)
        signals = {
            "jaw": controls[:, CONTROL_INDEX["jaw_open"]],
            "smile": controls[:, SMILE].mean(axis=1),
            "blink": controls[:, BLINK].mean(axis=1),
            "brow": controls[:, CONTROL_INDEX["brow_raise"]] - controls[:, CONTROL_INDEX["brow_lower"]],
        }
        for name, signal in signals.items():
            spreads[name].append(float(signal.max() - signal.min()))
    return {name: float(np.mean(values)) for name, values in spreads.items()}


def test_full_range_clips_change_every_signal_far_more_within_a_clip_than_talking_clips():
    speech, full = within_clip_spread("speech"), within_clip_spread("full")
    # Talking clips hold the smile and brows at a per-clip level; the full range moves them within the clip ...
    for name in ("smile", "brow"):
        assert full[name] > 1.6 * speech[name], (name, full[name], speech[name])
    # ... and keeps the jaw and blinks moving as much as talking does.
    for name in ("jaw", "blink"):
        assert full[name] > 0.85 * speech[name], (name, full[name], speech[name])


def test_held_expressions_reach_every_control_s_full_range_one_sided_and_held():
    clips = [held_expression_trajectory(rng(seed), CLIP, FPS) for seed in range(400)]
    stacked = np.concatenate(clips)
    for name in CONTROL_NAMES:
        assert stacked[:, CONTROL_INDEX[name]].max() >= 0.9, name
    assert np.abs(stacked[:, SMILE[0]] - stacked[:, SMILE[1]]).max() >= 0.6  # one-sided smiles
    assert np.abs(stacked[:, BLINK[0]] - stacked[:, BLINK[1]]).max() >= 0.7  # winks
    squints = (stacked[:, BLINK].min(axis=1) > 0.3) & (stacked[:, BLINK].max(axis=1) < 0.7)
    assert squints.mean() > 0.02
    # Holds: consecutive identical rows; and no clip sits on one expression for the whole second.
    assert np.mean([np.any(np.all(np.diff(c, axis=0) == 0, axis=1)) for c in clips]) > 0.8
    assert all(np.ptp(c, axis=0).max() > 0.3 for c in clips)


def test_every_archetype_names_real_controls_with_ranges_inside_the_unit_interval():
    for name, ranges in EXPRESSION_ARCHETYPES.items():
        for control, (low, high) in ranges.items():
            assert control in CONTROL_INDEX, (name, control)
            assert 0.0 <= low <= high <= 1.0, (name, control)


@pytest.mark.parametrize("frames", [1, 3, CLIP, LONG])
def test_full_range_trajectory_is_in_the_unit_range_and_deterministic(frames):
    for seed in SEEDS:
        controls = expression_trajectory(rng(seed), frames, FPS, "full")
        assert controls.shape == (frames, len(CONTROL_NAMES))
        assert controls.min() >= 0.0 and controls.max() <= 1.0
        np.testing.assert_array_equal(expression_trajectory(rng(seed), frames, FPS, "full"), controls)


def test_an_unknown_expression_range_is_refused():
    with pytest.raises(ValueError, match="expression range"):
        expression_trajectory(rng(0), CLIP, FPS, "wild")


@pytest.mark.parametrize("frames", [3, 6, 50, LONG])
def test_expression_trajectory_has_one_row_of_8_controls_per_frame_in_the_unit_range(frames):
    for seed in SEEDS:
        controls = expression_trajectory(rng(seed), frames, FPS)
        assert controls.shape == (frames, len(CONTROL_NAMES))
        assert np.isfinite(controls).all()
        assert controls.min() >= 0.0
        assert controls.max() <= 1.0


def test_expression_trajectory_is_deterministic_for_a_seed_and_varies_with_it():
    first = expression_trajectory(rng(4), 200, FPS)
    np.testing.assert_array_equal(expression_trajectory(rng(4), 200, FPS), first)
    assert not np.array_equal(expression_trajectory(rng(5), 200, FPS), first)


def test_jaw_moves_in_speech_like_syllable_bursts(long_expressions):
    frequencies = np.fft.rfftfreq(LONG, 1.0 / FPS)
    band = (frequencies >= 2.0) & (frequencies <= 8.0)
    for controls in long_expressions:
        jaw = controls[:, CONTROL_INDEX["jaw_open"]]
        assert jaw.max() > 0.3  # it opens noticeably
        power = np.abs(np.fft.rfft(jaw - jaw.mean())) ** 2
        assert power[band].sum() > 0.5 * power[frequencies > 0].sum()  # syllable-rate energy dominates
        peaks = (jaw[1:-1] > jaw[:-2]) & (jaw[1:-1] >= jaw[2:]) & (jaw[1:-1] > 0.05)
        assert peaks.sum() >= 30  # many syllables in 20 s


def test_blinks_happen_and_are_short(long_expressions):
    blinks_seen = 0
    for controls in long_expressions:
        for name in ("blink_left", "blink_right"):
            runs = runs_above(controls[:, CONTROL_INDEX[name]], 0.5)
            blinks_seen += len(runs)
            assert all(length / FPS < 0.5 for length in runs), runs
    assert blinks_seen >= len(SEEDS)  # about one blink per clip and eye at the least


def test_blinks_close_the_eyes_fully_at_their_peak(long_expressions):
    peaks = [controls[:, CONTROL_INDEX["blink_left"]].max() for controls in long_expressions]
    assert max(peaks) > 0.9


def test_brow_raise_and_brow_lower_are_never_active_together(long_expressions):
    for controls in long_expressions:
        both = np.minimum(controls[:, CONTROL_INDEX["brow_raise"]], controls[:, CONTROL_INDEX["brow_lower"]])
        assert both.max() == 0.0


def test_smiles_and_brows_drift_slowly(long_expressions):
    for controls in long_expressions:
        for name in ("smile_left", "smile_right", "brow_raise", "brow_lower"):
            assert np.abs(np.diff(controls[:, CONTROL_INDEX[name]])).max() < 0.1, name


# ------------------------------------------------------------------------------------------------- cameras


@pytest.mark.parametrize("frames", [3, 6, 50, LONG])
def test_camera_trajectory_has_yaw_and_pitch_per_frame_within_the_limits(frames):
    for seed in SEEDS:
        angles = camera_trajectory(rng(seed), frames, FPS)
        assert angles.shape == (frames, 2)
        assert np.isfinite(angles).all()
        assert np.abs(angles[:, 0]).max() <= MAX_YAW == 35.0
        assert np.abs(angles[:, 1]).max() <= MAX_PITCH == 20.0


def test_camera_trajectory_is_deterministic_for_a_seed_and_varies_with_it():
    first = camera_trajectory(rng(8), 100, FPS)
    np.testing.assert_array_equal(camera_trajectory(rng(8), 100, FPS), first)
    assert not np.array_equal(camera_trajectory(rng(9), 100, FPS), first)


def test_long_camera_paths_move_smoothly_but_do_move(long_cameras):
    for angles in long_cameras:
        steps = np.abs(np.diff(angles, axis=0))
        assert steps.max() < 3.0  # degrees per frame at 25 fps
        assert np.ptp(angles[:, 0]) > 2.0  # the camera wanders, it is not frozen


def test_camera_bases_cover_both_sides(long_cameras):
    mean_yaws = np.array([angles[:, 0].mean() for angles in long_cameras])
    assert (mean_yaws > 5).any()
    assert (mean_yaws < -5).any()


@pytest.mark.parametrize("frames", [100, 250, LONG])
def test_camera_paths_of_4_s_and_more_move_less_than_3_degrees_per_frame(frames):
    # Shorter clips sweep a good part of the range on purpose (the path's time scale is a quarter of the clip).
    worst = max(np.abs(np.diff(camera_trajectory(rng(seed), frames, FPS), axis=0)).max() for seed in range(50))
    assert worst < 3.0


def test_even_a_one_second_clip_turns_the_head():
    yaw_ranges = [np.ptp(camera_trajectory(rng(seed), 25, FPS)[:, 0]) for seed in SEEDS]
    assert np.median(yaw_ranges) > 5.0


def test_no_camera_path_is_frozen():
    frozen = []
    for seed in range(200):
        angles = camera_trajectory(rng(seed), 6, FPS)
        if np.ptp(angles[:, 0]) < 0.5 and np.ptp(angles[:, 1]) < 0.5:
            frozen.append(seed)
    assert frozen == []


@pytest.mark.parametrize("frames", [6, 50, LONG])
def test_camera_paths_rarely_sit_on_the_angle_limits(frames):
    at_limit = []
    for seed in range(200):
        angles = camera_trajectory(rng(seed), frames, FPS)
        at_limit.append(((np.abs(angles[:, 0]) >= MAX_YAW) | (np.abs(angles[:, 1]) >= MAX_PITCH)).mean())
    assert np.mean(at_limit) < 0.1


# ------------------------------------------------------------------------------------------------- tiny clips


def test_zero_frames_give_empty_trajectories():
    assert expression_trajectory(rng(0), 0, FPS).shape == (0, len(CONTROL_NAMES))


def test_zero_frames_give_an_empty_camera_path():
    assert camera_trajectory(rng(0), 0, FPS).shape == (0, 2)


@pytest.mark.parametrize("frames", [1, 2])
def test_one_or_two_frame_expression_trajectories_work(frames):
    controls = expression_trajectory(rng(0), frames, FPS)
    assert controls.shape == (frames, len(CONTROL_NAMES))
    assert 0.0 <= controls.min() <= controls.max() <= 1.0


def test_a_one_frame_camera_path_is_within_the_limits():
    angles = camera_trajectory(rng(0), 1, FPS)
    assert angles.shape == (1, 2)
    assert abs(angles[0, 0]) <= MAX_YAW
    assert abs(angles[0, 1]) <= MAX_PITCH
