"""ReenactmentScores: which pairs count where, and expression_r within clips."""

from __future__ import annotations

import numpy as np
import pytest

from export3d_cli.face.alignment import SimilarityTransform
from export3d_cli.face.blendshapes import BLENDSHAPE_INDEX, EXPRESSION_DIM
from export3d_cli.metrics.face_measurement import FaceMeasurement
from export3d_cli.metrics.reenactment_scores import ReenactmentScores

IDENTITY = SimilarityTransform(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def _face(jaw: float = 0.0, yaw: float = 0.0, keypoints: np.ndarray | None = None) -> FaceMeasurement:
    beta = np.zeros(EXPRESSION_DIM)
    beta[BLENDSHAPE_INDEX["jawOpen"]] = jaw
    return FaceMeasurement(beta, np.array([yaw, 0.0, 0.0]), np.zeros((478, 2)), IDENTITY, keypoints=keypoints)


def test_pairs_without_a_face_are_left_out_and_counted():
    scores = ReenactmentScores()
    scores.add(_face(0.5, yaw=3.0), _face(0.1))
    scores.add(None, _face(0.2))  # no generated face
    scores.add(_face(0.3), None)  # no driving face
    summary = scores.summary()
    assert summary["frames"] == 3 and summary["face_found"] == pytest.approx(2 / 3)
    assert summary["expression_pairs"] == 1 and summary["driving_missing"] == 1
    assert summary["aed"] == pytest.approx(0.4 / EXPRESSION_DIM)
    assert summary["apd"] == pytest.approx(1.0)  # |3 - 0| over three angles


def test_akd_needs_keypoints_on_both_sides():
    points = np.array([[0.0, 0.0], [4.0, 0.0]])
    scores = ReenactmentScores()
    scores.add(
        _face(keypoints=points + np.array([3.0, 4.0])), _face(), reference=_face(keypoints=points), with_reference=True
    )
    scores.add(_face(keypoints=points), _face(), reference=None, with_reference=True)
    summary = scores.summary()
    assert summary["akd"] == pytest.approx(5.0) and summary["akd_pairs"] == 1 and summary["reference_missing"] == 1


def test_expression_r_follows_the_driver_within_clips_not_across_them():
    """A face frozen per clip whose level happens to match each clip's mean is not following the driver."""
    frozen, following = ReenactmentScores(), ReenactmentScores()
    for level in (0.1, 0.5, 0.9):
        frozen.new_clip()
        following.new_clip()
        for wiggle in (-0.05, 0.0, 0.05):
            driver = _face(level + wiggle)
            frozen.add(_face(level), driver)
            following.add(_face(level + 0.5 * wiggle), driver)
    assert frozen.expression_r()["jaw"] is None
    assert following.expression_r()["jaw"] == pytest.approx(1.0)
    # Without clips the frozen face would have looked perfect: r over the pooled series is 0.99.
    pooled = ReenactmentScores(
        generated_expression=frozen.generated_expression, driving_expression=frozen.driving_expression
    )
    pooled.clip_of_pair = [0] * len(frozen.generated_expression)
    assert pooled.expression_r()["jaw"] > 0.95
