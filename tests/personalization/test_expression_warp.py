"""The rig's expressions applied to real photos, re-measured by the face pipeline (metamorphic checks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from export3d_cli.face.analysis import analyze_observation
from export3d_cli.face.landmarker import FaceLandmarker
from export3d_cli.media.image_io import load_image
from export3d_cli.metrics.expression import expression_signal
from export3d_cli.personalization.expression_warp import ExpressionWarp, inside_polygon
from export3d_cli.synth.face_rig import CONTROL_INDEX, INNER_LIPS

REAL_FACES = Path(__file__).parents[1] / "data" / "real_faces"


def controls(**amounts: float) -> np.ndarray:
    values = np.zeros(len(CONTROL_INDEX))
    for name, amount in amounts.items():
        values[CONTROL_INDEX[name]] = amount
    return values


@pytest.fixture(scope="module")
def landmarker():
    with FaceLandmarker("image") as own:
        yield own


def warp_for(name: str, landmarker) -> tuple[np.ndarray, ExpressionWarp]:
    photo = load_image(REAL_FACES / name)
    face = landmarker.detect(photo)[0]
    analysis = analyze_observation(photo, face, 256, 1)
    return photo, ExpressionWarp(photo, face.landmarks, analysis.camera)


def measure(image: np.ndarray, landmarker, signal: str) -> float:
    faces = landmarker.detect(image)
    assert faces, "the warped photo must still show a face"
    return float(expression_signal(faces[0].blendshapes[None], signal)[0])


@pytest.mark.parametrize("name", ["obama_2010_blue_room.jpg", "collins_astronaut.jpg"])
def test_no_expression_change_leaves_the_photo_untouched(name, landmarker):
    photo, warp = warp_for(name, landmarker)
    np.testing.assert_array_equal(warp(controls()), photo)


def test_pixels_outside_the_anchor_ring_never_change(landmarker):
    photo, warp = warp_for("obama_2010_blue_room.jpg", landmarker)
    warped = warp(controls(jaw_open=1.0, smile_left=1.0, brow_raise=1.0))
    x0, y0, x1, y1 = warp.box
    outside = np.ones(photo.shape[:2], dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert outside.any()
    np.testing.assert_array_equal(warped[outside], photo[outside])
    assert np.abs(warped.astype(int) - photo).max() > 50  # and inside, the face did change


@pytest.mark.parametrize("name", ["obama_2010_blue_room.jpg", "collins_astronaut.jpg"])
def test_opening_the_jaw_is_measured_as_an_open_jaw(name, landmarker):
    photo, warp = warp_for(name, landmarker)
    before = measure(photo, landmarker, "jaw")
    half = measure(warp(controls(jaw_open=0.5)), landmarker, "jaw")
    assert half > before + 0.05, (before, half)
    moved = warp.moved_landmarks(controls(jaw_open=0.5))
    lower_lip, upper_lip = 14, 13
    assert moved[lower_lip, 1] - moved[upper_lip, 1] > warp.face[lower_lip, 1] - warp.face[upper_lip, 1] + 3


def test_closed_lips_open_onto_a_dark_mouth_with_teeth(landmarker):
    photo, warp = warp_for("obama_2010_blue_room.jpg", landmarker)
    warped = warp(controls(jaw_open=1.0)).astype(np.float64)
    opening = warp.moved_landmarks(controls(jaw_open=1.0))[list(INNER_LIPS)]
    yy, xx = np.mgrid[0 : photo.shape[0], 0 : photo.shape[1]]
    centres = np.stack([xx.ravel(), yy.ravel()], axis=1) + 0.5
    inside = inside_polygon(centres, opening).reshape(photo.shape[:2])
    assert inside.sum() > 100
    luminance = warped[inside].mean(axis=1)
    before = photo[inside].astype(np.float64).mean(axis=1)
    assert np.mean(luminance < 60) > 0.3  # the cavity
    assert np.mean(luminance > 120) > 0.05  # teeth
    assert np.abs(luminance - before).mean() > 30  # not the photo's lips stretched over the opening


def test_closing_the_eyes_is_measured_as_a_blink(landmarker):
    photo, warp = warp_for("obama_2010_blue_room.jpg", landmarker)
    before = measure(photo, landmarker, "blink")
    closed = measure(warp(controls(blink_left=1.0, blink_right=1.0)), landmarker, "blink")
    assert closed > before + 0.15, (before, closed)


def test_raising_the_brows_is_measured(landmarker):
    photo, warp = warp_for("obama_2010_blue_room.jpg", landmarker)
    before = measure(photo, landmarker, "brow")
    raised = measure(warp(controls(brow_raise=1.0)), landmarker, "brow")
    assert raised > before + 0.1, (before, raised)
