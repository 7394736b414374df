"""Tests of the synthetic head renderer: determinism, camera geometry, backdrop, mouth and eyes, and MediaPipe.

The head lives in the model's world (canonical cm x 0.02, nose tip on the pivot), so a frontal EG3D camera puts the
nose tip at the crop centre; ``look_at_pose(yaw > 0)`` moves the camera to +x, the subject's left. The landmark
checks are analytic (``SyntheticHead.landmarks``); the pixel checks use a fixed, slightly oblique light so that the
eyes' specular highlight does not sit on the pupil.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from export3d_cli.face.blendshapes import BLENDSHAPE_INDEX
from export3d_cli.face.head_pose import label_angles, look_at_pose
from export3d_cli.synth.face_rig import CONTROL_INDEX, CONTROL_NAMES, LEFT_EYE, RIGHT_EYE
from export3d_cli.synth.head_renderer import Lighting, SyntheticHead, random_lighting
from export3d_cli.synth.identity import FaceShape, random_identity
from export3d_cli.synth.textures import background

R = 128
MP_RESOLUTION = 192
IDENTITY_SEED = 0
IDENTITIES = (0, 1, 2)
NOSE_TIP = 4
JAW_OPEN = BLENDSHAPE_INDEX["jawOpen"]
BLINK_LEFT = BLENDSHAPE_INDEX["eyeBlinkLeft"]
BLINK_RIGHT = BLENDSHAPE_INDEX["eyeBlinkRight"]


def controls(**amounts: float) -> np.ndarray:
    vector = np.zeros(len(CONTROL_NAMES))
    for name, amount in amounts.items():
        vector[CONTROL_INDEX[name]] = amount
    return vector


NEUTRAL = controls()


def frontal() -> np.ndarray:
    return look_at_pose(0.0, 0.0).label()


def oblique_light() -> Lighting:
    direction = np.array([0.35, -0.45, -1.0])
    return Lighting(direction / np.linalg.norm(direction), np.ones(3), 0.45, 0.15)


def gradient_backdrop(size: int) -> np.ndarray:
    """[size, size, 3] float32: red grows to the right, green downwards, blue constant (any flip would show)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return np.stack([xx / size, yy / size, np.full_like(xx, 0.5)], axis=-1)


def grey_backdrop(size: int) -> np.ndarray:
    return np.full((size, size, 3), 0.5, np.float32)


def patch_mean(image: np.ndarray, point: np.ndarray, radius: int = 1) -> float:
    x, y = int(point[0]), int(point[1])
    return float(image[y - radius : y + radius + 1, x - radius : x + radius + 1].astype(np.float64).mean())


def white_pixels_around_the_eyes(image: np.ndarray, landmarks: np.ndarray) -> int:
    """Bright, nearly grey (sclera-like) pixels in the boxes around both eye openings."""
    count = 0
    for ring in (RIGHT_EYE, LEFT_EYE):
        points = landmarks[list(ring)]
        x0, y0 = np.floor(points.min(axis=0)).astype(int) - 1
        x1, y1 = np.ceil(points.max(axis=0)).astype(int) + 1
        region = image[y0:y1, x0:x1].astype(np.int32)
        bright = region.min(axis=-1) > 0.6 * 255
        grey = region.max(axis=-1) - region.min(axis=-1) < 0.12 * 255
        count += int((bright & grey).sum())
    return count


@pytest.fixture(scope="module")
def heads() -> dict[int, SyntheticHead]:
    return {index: SyntheticHead(random_identity(index, IDENTITY_SEED)) for index in IDENTITIES}


@pytest.fixture(scope="module")
def neutral_head() -> SyntheticHead:
    """Identity 0 with a neutral face shape (all factors 1, all offsets 0): mirror-symmetric geometry."""
    identity = random_identity(0, IDENTITY_SEED)
    shape = FaceShape.neutral()
    return SyntheticHead(dataclasses.replace(identity, shape=shape))


@pytest.fixture(scope="module")
def landmarker():
    from export3d_cli.face.landmarker import FaceLandmarker

    with FaceLandmarker("image") as model:
        yield model


def analyse(image: np.ndarray, landmarker):
    from export3d_cli.face.analysis import analyze_image

    return analyze_image(image, resolution=MP_RESOLUTION, landmarker=landmarker, name="render")


# ------------------------------------------------------------------------------------------------- determinism


def test_render_is_deterministic_and_returns_an_rgb_uint8_frame(heads):
    head = heads[0]
    lighting = random_lighting(np.random.default_rng(1))
    backdrop = background(np.random.default_rng(2), R, R)
    label = look_at_pose(12.0, -5.0).label()
    pose = controls(jaw_open=0.4, smile_left=0.3, blink_right=0.6)
    first = head.render(pose, label, R, lighting, backdrop)
    assert first.dtype == np.uint8
    assert first.shape == (R, R, 3)
    np.testing.assert_array_equal(head.render(pose, label, R, lighting, backdrop), first)
    again = SyntheticHead(random_identity(0, IDENTITY_SEED)).render(pose, label, R, lighting, backdrop)
    np.testing.assert_array_equal(again, first)


def test_render_depends_on_expression_camera_and_identity(heads):
    lighting, backdrop = oblique_light(), grey_backdrop(R)
    base = heads[0].render(NEUTRAL, frontal(), R, lighting, backdrop)
    assert not np.array_equal(heads[0].render(controls(jaw_open=1.0), frontal(), R, lighting, backdrop), base)
    assert not np.array_equal(heads[0].render(NEUTRAL, look_at_pose(10.0, 0.0).label(), R, lighting, backdrop), base)
    assert not np.array_equal(heads[1].render(NEUTRAL, frontal(), R, lighting, backdrop), base)


# ------------------------------------------------------------------------------------------------- geometry


def test_frontal_camera_puts_the_nose_tip_at_the_crop_centre(heads):
    for head in heads.values():
        nose = head.landmarks(NEUTRAL, frontal(), R)[NOSE_TIP]
        assert np.abs(nose - R / 2).max() < 1.0


def test_the_nose_tip_stays_near_the_centre_from_every_camera(heads):
    # The pivot is the canonical nose tip; identity shapes move the actual tip only a few millimetres.
    for head in heads.values():
        for yaw, pitch in ((30.0, 0.0), (-30.0, 0.0), (0.0, 20.0), (0.0, -20.0), (25.0, 15.0)):
            nose = head.landmarks(NEUTRAL, look_at_pose(yaw, pitch).label(), R)[NOSE_TIP]
            assert np.abs(nose - R / 2).max() < 4.0, (yaw, pitch)


def test_frontal_landmarks_of_a_neutral_shape_are_mirror_symmetric(neutral_head):
    landmarks = neutral_head.landmarks(NEUTRAL, frontal(), R).astype(np.float64)
    for right, left in ((33, 263), (61, 291), (234, 454), (159, 386), (105, 334), (468, 473)):
        assert landmarks[right, 0] + landmarks[left, 0] == pytest.approx(R, abs=1e-3)
        assert landmarks[right, 1] == pytest.approx(landmarks[left, 1], abs=1e-3)
    assert landmarks[33, 0] < R / 2 < landmarks[263, 0]  # the subject's right appears on the image's left


def test_positive_yaw_turns_the_subjects_left_cheek_towards_the_camera(heads):
    """Camera at +x: the subject's left half (454 side, image right) widens, the right half (234 side) narrows."""

    def left_to_right_ratio(head: SyntheticHead, yaw: float) -> float:
        landmarks = head.landmarks(NEUTRAL, look_at_pose(yaw, 0.0).label(), R)
        nose = landmarks[NOSE_TIP, 0]
        return float((landmarks[454, 0] - nose) / (nose - landmarks[234, 0]))

    for head in heads.values():
        assert left_to_right_ratio(head, 0.0) == pytest.approx(1.0, abs=0.15)
        assert left_to_right_ratio(head, 30.0) > 2.0
        assert left_to_right_ratio(head, -30.0) < 0.5


def test_positive_pitch_puts_the_camera_below_the_face(heads):
    """Seen from below, the protruding nose tip rises above the face contour (234/454, far back) in the image."""

    def nose_below_contour(head: SyntheticHead, pitch: float) -> float:
        landmarks = head.landmarks(NEUTRAL, look_at_pose(0.0, pitch).label(), R)
        return float(landmarks[NOSE_TIP, 1] - (landmarks[234, 1] + landmarks[454, 1]) / 2)  # image y points down

    for head in heads.values():
        level = nose_below_contour(head, 0.0)
        assert nose_below_contour(head, 20.0) < level - 5.0
        assert nose_below_contour(head, -20.0) > level + 5.0


def test_pupils_are_drawn_where_the_iris_landmarks_project(heads):
    lighting, backdrop = oblique_light(), grey_backdrop(MP_RESOLUTION)
    for head in heads.values():
        image = head.render(NEUTRAL, frontal(), MP_RESOLUTION, lighting, backdrop)
        landmarks = head.landmarks(NEUTRAL, frontal(), MP_RESOLUTION)
        for iris_centre in (468, 473):
            x, y = landmarks[iris_centre].astype(int)
            assert image[y, x].max() < 60, (iris_centre, image[y, x])


# ------------------------------------------------------------------------------------------------- pixels


def test_uncovered_corners_show_the_backdrop(heads):
    backdrop = gradient_backdrop(R)
    expected = np.rint(backdrop * 255.0)
    for head in heads.values():
        image = head.render(NEUTRAL, frontal(), R, oblique_light(), backdrop).astype(np.float64)
        for rows, columns in ((slice(0, 6), slice(0, 6)), (slice(0, 6), slice(R - 6, R))):
            np.testing.assert_allclose(image[rows, columns], expected[rows, columns], atol=1.0)
        assert np.abs(image[R // 2, R // 2] - expected[R // 2, R // 2]).max() > 10  # the face covers the centre


def test_open_jaw_shows_a_dark_mouth_and_a_closed_one_shows_the_lips(heads):
    lighting, backdrop = oblique_light(), grey_backdrop(R)
    for head in heads.values():
        closed_image = head.render(NEUTRAL, frontal(), R, lighting, backdrop)
        closed_landmarks = head.landmarks(NEUTRAL, frontal(), R)
        closed = patch_mean(closed_image, (closed_landmarks[13] + closed_landmarks[14]) / 2)
        open_pose = controls(jaw_open=1.0)
        open_image = head.render(open_pose, frontal(), R, lighting, backdrop)
        open_landmarks = head.landmarks(open_pose, frontal(), R)
        assert open_landmarks[14, 1] - open_landmarks[13, 1] > 8  # the lips part by several pixels
        opened = patch_mean(open_image, (open_landmarks[13] + open_landmarks[14]) / 2)
        assert opened < 0.35 * 255
        assert closed > opened + 20


def test_closed_eyes_hide_the_sclera(heads):
    lighting, backdrop = oblique_light(), grey_backdrop(MP_RESOLUTION)
    for head in heads.values():
        landmarks = head.landmarks(NEUTRAL, frontal(), MP_RESOLUTION)
        opened = head.render(NEUTRAL, frontal(), MP_RESOLUTION, lighting, backdrop)
        open_eyes = white_pixels_around_the_eyes(opened, landmarks)
        shut = head.render(controls(blink_left=1.0, blink_right=1.0), frontal(), MP_RESOLUTION, lighting, backdrop)
        closed_eyes = white_pixels_around_the_eyes(shut, landmarks)
        assert open_eyes >= 10
        assert closed_eyes <= 0.2 * open_eyes


# ------------------------------------------------------------------------------------------------- MediaPipe


@pytest.fixture(scope="module")
def yaw_analyses(heads, landmarker):
    """(identity, rendered yaw) -> MediaPipe analysis of a neutral render at MP_RESOLUTION."""
    lighting, backdrop = oblique_light(), grey_backdrop(MP_RESOLUTION)
    results = {}
    for index, head in heads.items():
        for yaw in (-30.0, 0.0, 30.0):
            image = head.render(NEUTRAL, look_at_pose(yaw, 0.0).label(), MP_RESOLUTION, lighting, backdrop)
            results[index, yaw] = analyse(image, landmarker)
    return results


def test_mediapipe_finds_the_face_and_measures_the_rendered_yaw(yaw_analyses):
    for (index, yaw), analysis in yaw_analyses.items():
        measured_yaw, measured_pitch, _ = label_angles(analysis.camera)
        assert analysis.faces_found == 1, index
        if yaw:
            assert np.sign(measured_yaw) == np.sign(yaw), (index, yaw, measured_yaw)
        assert measured_yaw == pytest.approx(yaw, abs=8.0), (index, yaw)
        assert abs(measured_pitch) < 8.0, (index, yaw)


def test_mediapipe_landmarks_agree_with_the_exact_landmarks(heads, yaw_analyses):
    for (index, yaw), analysis in yaw_analyses.items():
        exact = heads[index].landmarks(NEUTRAL, look_at_pose(yaw, 0.0).label(), MP_RESOLUTION)
        detected = analysis.landmarks[:, :2]
        for landmark in (NOSE_TIP, 33, 263, 61, 291, 152):
            assert np.linalg.norm(detected[landmark] - exact[landmark]) < 0.05 * MP_RESOLUTION, (index, yaw, landmark)


def test_mediapipe_measures_an_open_jaw(heads, landmarker):
    lighting, backdrop = oblique_light(), grey_backdrop(MP_RESOLUTION)
    for head in heads.values():
        closed = analyse(head.render(NEUTRAL, frontal(), MP_RESOLUTION, lighting, backdrop), landmarker)
        opened = analyse(head.render(controls(jaw_open=1.0), frontal(), MP_RESOLUTION, lighting, backdrop), landmarker)
        assert opened.expression[JAW_OPEN] > closed.expression[JAW_OPEN] + 0.2


def test_mediapipe_measures_blinks_on_the_right_side(heads, landmarker):
    lighting, backdrop = oblique_light(), grey_backdrop(MP_RESOLUTION)
    for head in heads.values():
        neutral = analyse(head.render(NEUTRAL, frontal(), MP_RESOLUTION, lighting, backdrop), landmarker).expression
        both = analyse(
            head.render(controls(blink_left=1.0, blink_right=1.0), frontal(), MP_RESOLUTION, lighting, backdrop),
            landmarker,
        ).expression
        assert both[BLINK_LEFT] + both[BLINK_RIGHT] > neutral[BLINK_LEFT] + neutral[BLINK_RIGHT] + 0.4
        left_wink = analyse(
            head.render(controls(blink_left=1.0), frontal(), MP_RESOLUTION, lighting, backdrop), landmarker
        ).expression
        # "left" is the subject's left for the rig and for MediaPipe's blendshapes alike.
        assert left_wink[BLINK_LEFT] - neutral[BLINK_LEFT] > left_wink[BLINK_RIGHT] - neutral[BLINK_RIGHT] + 0.1
