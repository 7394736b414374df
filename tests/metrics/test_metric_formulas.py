"""AED, APD, expression_r and AKD on small arrays whose answers are computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from export3d_cli.face.alignment import SimilarityTransform
from export3d_cli.face.blendshapes import BLENDSHAPE_INDEX, EXPRESSION_DIM
from export3d_cli.metrics.expression import (
    average_expression_distance,
    expression_correlations,
    expression_signal,
    pearson_r,
)
from export3d_cli.metrics.keypoints import keypoint_distance
from export3d_cli.metrics.pose import average_pose_distance


def _beta(**scores: float) -> np.ndarray:
    beta = np.zeros(EXPRESSION_DIM)
    for name, value in scores.items():
        beta[BLENDSHAPE_INDEX[name]] = value
    return beta


def test_aed_is_the_mean_absolute_blendshape_difference():
    generated = np.stack([_beta(jawOpen=0.5), _beta(eyeBlinkLeft=0.2, mouthSmileRight=0.1)])
    driving = np.stack([_beta(jawOpen=0.1), _beta(eyeBlinkLeft=0.6)])
    # Frame 0: |0.5 - 0.1| = 0.4; frame 1: |0.2 - 0.6| + |0.1 - 0| = 0.5; over 2 x 52 entries.
    assert average_expression_distance(generated, driving) == pytest.approx(0.9 / (2 * 52))
    assert average_expression_distance(driving, driving) == 0.0
    assert average_expression_distance(np.zeros((0, 52)), np.zeros((0, 52))) is None
    with pytest.raises(ValueError, match="shapes differ"):
        average_expression_distance(generated, driving[:1])


def test_expression_signals_average_the_left_and_right_blendshapes():
    beta = np.stack([_beta(mouthSmileLeft=0.2, mouthSmileRight=0.6, eyeBlinkLeft=1.0, jawOpen=0.3, browInnerUp=0.7)])
    assert expression_signal(beta, "smile")[0] == pytest.approx(0.4)
    assert expression_signal(beta, "blink")[0] == pytest.approx(0.5)
    assert expression_signal(beta, "jaw")[0] == pytest.approx(0.3)
    assert expression_signal(beta, "brow")[0] == pytest.approx(0.7)


def test_pearson_r_matches_numpy_and_is_scale_free():
    rng = np.random.default_rng(0)
    x, y = rng.random(30), rng.random(30)
    assert pearson_r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1])
    assert pearson_r(x, 0.01 * x + 3) == pytest.approx(1.0)
    assert pearson_r(x, -x) == pytest.approx(-1.0)


def test_pearson_r_is_undefined_for_constant_or_too_short_series():
    assert pearson_r(np.ones(10), np.arange(10.0)) is None
    assert pearson_r(np.arange(2.0), np.arange(2.0)) is None


def test_expression_correlations_follow_each_signal_separately():
    t = np.arange(20)
    jaw = 0.5 + 0.4 * np.sin(t / 3)
    driving = np.stack(
        [_beta(jawOpen=j, mouthSmileLeft=s, mouthSmileRight=s) for j, s in zip(jaw, t / 20, strict=True)]
    )
    # Jaw copied, smile reversed in time, blink never moves.
    generated = np.stack([_beta(jawOpen=j, mouthSmileLeft=s) for j, s in zip(jaw, t[::-1] / 20, strict=True)])
    r = expression_correlations(generated, driving)
    assert r["jaw"] == pytest.approx(1.0)
    assert r["smile"] == pytest.approx(-1.0)
    assert r["blink"] is None and r["brow"] is None


def test_apd_averages_absolute_angle_differences_and_wraps_around():
    generated = np.array([[10.0, 0.0, 179.0], [0.0, -5.0, 0.0]])
    driving = np.array([[4.0, 3.0, -179.0], [0.0, 5.0, 0.0]])
    # |6| + |3| + |2 (wrapped, not 358)| + 0 + |10| + 0 = 21 over 6 entries.
    assert average_pose_distance(generated, driving) == pytest.approx(21 / 6)
    assert average_pose_distance(np.zeros((0, 3)), np.zeros((0, 3))) is None


def test_akd_is_measured_in_the_reference_crop():
    reference = np.array([[10.0, 10.0], [20.0, 10.0], [15.0, 20.0]])
    generated = reference + np.array([[3.0, 4.0], [0.0, 0.0], [0.0, -2.0]])  # distances 5, 0, 2
    identity = SimilarityTransform(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    assert keypoint_distance(generated, reference, identity) == pytest.approx(7 / 3)
    # A crop twice the image's scale, rotated and shifted: distances double, nothing else changes.
    angle = np.deg2rad(30)
    rotation = 2 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    crop = SimilarityTransform(np.concatenate([rotation, [[5.0], [-7.0]]], axis=1))
    assert keypoint_distance(generated, reference, crop) == pytest.approx(14 / 3)
