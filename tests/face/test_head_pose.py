"""Head pose → EG3D camera label: agreement with the torch look-at sampler, the landmark fit, projections."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from export3d_cli.camera_conventions import CAMERA_PIVOT, CAMERA_RADIUS, FFHQ_FOCAL
from export3d_cli.face.canonical_face import canonical_face
from export3d_cli.face.head_pose import (
    NOSE_TIP,
    WORLD_SCALE,
    HeadPose,
    canonical_to_world,
    label_angles,
    look_at_pose,
    project_to_crop,
    rotation_from_vector,
    rotation_to_vector,
    world_landmarks,
)
from export3d_cli.geometry.camera import Camera, look_at_cam2world

YAWS = np.linspace(-40.0, 40.0, 9)
PITCHES = np.linspace(-25.0, 25.0, 7)
GRID = [(float(y), float(p)) for y in YAWS for p in PITCHES]
PIVOT = np.array(CAMERA_PIVOT)
MIRROR = np.diag([-1.0, 1.0, 1.0])


def rotation_y(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def random_rotation(rng: np.random.Generator, max_angle: float = 1.0) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return rotation_from_vector(axis * rng.uniform(0.0, max_angle))


def image_landmarks(rotation: np.ndarray, scale: float = 30.0, offset=(300.0, 200.0, 0.0)) -> np.ndarray:
    """MediaPipe-style landmarks [468, 3] in image space (x right, y down, z away) of the rotated canonical head."""
    points = scale * canonical_face().vertices.astype(np.float64) @ rotation.T  # y up, z towards the viewer
    return points * np.array([1.0, -1.0, -1.0]) + np.asarray(offset)


def torch_label(yaw_degrees: float, pitch_degrees: float) -> np.ndarray:
    cam2world = look_at_cam2world(math.radians(yaw_degrees), math.radians(pitch_degrees))
    return cam2world.reshape(16).double().numpy()


# --- agreement with EG3D's look-at sampler ---


@pytest.mark.parametrize(("yaw", "pitch"), GRID)
def test_look_at_pose_label_equals_the_torch_sampler(yaw, pitch):
    label = look_at_pose(yaw, pitch).label()
    np.testing.assert_allclose(label[:16], torch_label(yaw, pitch), atol=1e-6, rtol=0)


def test_label_angles_inverts_look_at_pose_on_a_grid():
    for yaw, pitch in GRID:
        pose = look_at_pose(yaw, pitch)
        y, p, r = label_angles(pose.label())
        assert y == pytest.approx(yaw, abs=1e-4)
        assert p == pytest.approx(pitch, abs=1e-4)
        assert r == pytest.approx(0.0, abs=1e-4)
        assert pose.yaw_pitch_roll() == pytest.approx((y, p, r))


def test_label_angles_of_the_torch_sampler_recover_its_inputs():
    for yaw, pitch in GRID:
        label = np.concatenate([torch_label(yaw, pitch), np.eye(3).reshape(9)])
        y, p, r = label_angles(label)
        assert (y, p, r) == pytest.approx((yaw, pitch, 0.0), abs=1e-4)


@pytest.mark.parametrize(("yaw", "pitch"), [(0.0, 0.0), (30.0, -10.0), (-40.0, 25.0), (12.5, 7.0)])
def test_label_has_ffhq_intrinsics_and_a_proper_look_at_camera(yaw, pitch):
    label = look_at_pose(yaw, pitch).label()
    assert label.shape == (25,)
    assert label.dtype == np.float32
    np.testing.assert_allclose(label[16:], [FFHQ_FOCAL, 0, 0.5, 0, FFHQ_FOCAL, 0.5, 0, 0, 1], atol=1e-6)
    assert FFHQ_FOCAL == 4.2647
    cam2world = label[:16].reshape(4, 4).astype(np.float64)
    np.testing.assert_array_equal(cam2world[3], [0, 0, 0, 1])
    rotation, origin = cam2world[:3, :3], cam2world[:3, 3]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-6)
    assert np.linalg.det(rotation) == pytest.approx(1.0, abs=1e-6)
    assert np.linalg.norm(origin) == pytest.approx(CAMERA_RADIUS, abs=1e-5)
    to_pivot = (PIVOT - origin) / np.linalg.norm(PIVOT - origin)
    np.testing.assert_allclose(rotation[:, 2], to_pivot, atol=1e-6)


def test_random_rotations_give_cameras_on_the_sphere_looking_at_the_pivot():
    rng = np.random.default_rng(3)
    for _ in range(20):
        cam2world = HeadPose(random_rotation(rng)).cam2world()
        origin, forward = cam2world[:3, 3], cam2world[:3, 2]
        assert np.linalg.norm(origin) == pytest.approx(CAMERA_RADIUS, abs=1e-9)
        offset = PIVOT - origin
        np.testing.assert_allclose(forward, offset / np.linalg.norm(offset), atol=1e-9)
        assert np.linalg.det(cam2world[:3, :3]) == pytest.approx(1.0)


def test_frontal_pose_camera_axes():
    cam2world = HeadPose(np.eye(3)).cam2world()
    np.testing.assert_allclose(cam2world[:3, 3], [0.0, 0.0, 2.7], atol=1e-12)
    np.testing.assert_allclose(cam2world[:3, 0], [1.0, 0.0, 0.0], atol=1e-12)  # right
    np.testing.assert_allclose(cam2world[:3, 1], [0.0, -1.0, 0.0], atol=1e-12)  # down
    np.testing.assert_allclose(cam2world[:3, 2], [0.0, 0.0, -1.0], atol=1e-12)  # forward
    np.testing.assert_allclose(look_at_pose(0.0, 0.0).rotation, np.eye(3), atol=1e-12)
    assert HeadPose(np.eye(3)).yaw_pitch_roll() == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


def test_head_turned_about_the_view_axis_is_pure_positive_roll():
    # +10° about the OpenGL camera's z axis (towards the viewer): the face turns anticlockwise on screen.
    yaw, pitch, roll = HeadPose.from_rotation_vector(np.array([0.0, 0.0, math.radians(10.0)])).yaw_pitch_roll()
    assert (yaw, pitch, roll) == pytest.approx((0.0, 0.0, 10.0), abs=1e-4)  # via the float32 label


def test_from_cam2world_inverts_cam2world():
    rng = np.random.default_rng(4)
    for _ in range(10):
        pose = HeadPose(random_rotation(rng, max_angle=2.0))
        np.testing.assert_allclose(HeadPose.from_cam2world(pose.cam2world()).rotation, pose.rotation, atol=1e-12)


# --- the landmark fit ---


def test_landmark_fit_recovers_the_rotation_of_noiseless_landmarks():
    rng = np.random.default_rng(5)
    for _ in range(5):
        rotation = random_rotation(rng, max_angle=0.8)
        np.testing.assert_allclose(HeadPose.from_landmarks(image_landmarks(rotation)).rotation, rotation, atol=1e-9)


def test_landmark_fit_ignores_where_the_face_is_and_how_large():
    rotation = random_rotation(np.random.default_rng(6), max_angle=0.5)
    reference = HeadPose.from_landmarks(image_landmarks(rotation)).rotation
    for scale, offset in ((5.0, (10.0, 10.0, 3.0)), (80.0, (1900.0, -40.0, -20.0)), (0.3, (0.0, 0.0, 0.0))):
        moved = HeadPose.from_landmarks(image_landmarks(rotation, scale, offset)).rotation
        np.testing.assert_allclose(moved, reference, atol=1e-9)


def test_landmark_fit_signs_head_turned_to_its_left_puts_the_camera_on_its_right():
    # The head turns to its own left (+x side): rotation about +y by +20°; the camera now sees its right side.
    yaw, pitch, roll = HeadPose.from_landmarks(image_landmarks(rotation_y(math.radians(20.0)))).yaw_pitch_roll()
    assert yaw < -15.0
    assert pitch == pytest.approx(0.0, abs=0.5)
    assert roll == pytest.approx(0.0, abs=1e-3)


def test_landmark_fit_weights_mediapipes_rigid_basis_only():
    rotation = random_rotation(np.random.default_rng(7), max_angle=0.4)
    landmarks = image_landmarks(rotation)
    rigid = set(canonical_face().procrustes_indices.tolist())
    mouth = [i for i in (13, 14, 17, 0, 61, 291) if i not in rigid]
    landmarks[mouth, 1] += 25.0  # an open mouth moves non-rigid landmarks a lot
    np.testing.assert_allclose(HeadPose.from_landmarks(landmarks).rotation, rotation, atol=1e-9)


def test_rotation_vector_round_trip_for_angles_below_pi():
    rng = np.random.default_rng(8)
    for angle in [*rng.uniform(0.0, 3.1, size=30), 1e-9, 1e-5, 3.0]:
        axis = rng.normal(size=3)
        vector = axis / np.linalg.norm(axis) * angle
        rotation = rotation_from_vector(vector)
        np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        np.testing.assert_allclose(rotation_to_vector(rotation), vector, atol=1e-8)
        np.testing.assert_allclose(rotation @ vector, vector, atol=1e-12)  # the axis is fixed


def test_rotation_from_vector_turns_anticlockwise_about_the_axis():
    rotation = rotation_from_vector(np.array([0.0, 0.0, math.pi / 2]))
    np.testing.assert_allclose(rotation @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


# --- mirror symmetry ---


@pytest.mark.parametrize("vector", [(0.1, 0.3, -0.2), (-0.25, -0.4, 0.15), (0.05, 0.6, 0.0), (0.3, 0.0, 0.35)])
def test_mirrored_face_negates_yaw_and_roll_and_matches_camera_mirrored(vector):
    pose = HeadPose.from_rotation_vector(np.array(vector))
    a, b, c = vector
    mirrored = HeadPose.from_rotation_vector(np.array([a, -b, -c]))
    np.testing.assert_allclose(mirrored.rotation, MIRROR @ pose.rotation @ MIRROR, atol=1e-12)
    yaw, pitch, roll = pose.yaw_pitch_roll()
    yaw_m, pitch_m, roll_m = mirrored.yaw_pitch_roll()
    assert yaw_m == pytest.approx(-yaw, abs=1e-4)
    assert pitch_m == pytest.approx(pitch, abs=1e-4)
    assert roll_m == pytest.approx(-roll, abs=1e-4)
    expected = Camera.from_label(torch.from_numpy(pose.label())).mirrored().label().numpy()
    np.testing.assert_allclose(mirrored.label(), expected, atol=1e-5)


# --- projection into the crop ---


@pytest.mark.parametrize(("yaw", "pitch"), [(0.0, 0.0), (35.0, 10.0), (-20.0, -25.0), (40.0, 25.0)])
@pytest.mark.parametrize("resolution", [128, 256, 512])
def test_pivot_projects_to_the_crop_centre(yaw, pitch, resolution):
    label = look_at_pose(yaw, pitch).label()
    centre = project_to_crop(PIVOT[None], label, resolution)
    np.testing.assert_allclose(centre, [[resolution / 2, resolution / 2]], atol=1e-4 * resolution)


def test_frontal_projection_orientation_and_scale():
    resolution = 256
    label = HeadPose(np.eye(3)).label()
    points = np.array([[0.1, 0.0, 0.2], [0.0, 0.1, 0.2], [-0.1, -0.1, 0.2]])
    projected = project_to_crop(points, label, resolution)
    offset = FFHQ_FOCAL * 0.1 / 2.5 * resolution  # focal · x / depth, in pixels
    np.testing.assert_allclose(projected[0], [resolution / 2 + offset, resolution / 2], atol=1e-3)
    np.testing.assert_allclose(projected[1], [resolution / 2, resolution / 2 - offset], atol=1e-3)
    np.testing.assert_allclose(projected[2], [resolution / 2 - offset, resolution / 2 + offset], atol=1e-3)


def test_projection_matches_the_pinhole_model_with_depth():
    label = HeadPose(np.eye(3)).label()
    near, far = project_to_crop(np.array([[0.1, 0.0, 0.7], [0.1, 0.0, -0.3]]), label, 100)
    assert near[0] - 50 == pytest.approx(FFHQ_FOCAL * 0.1 / 2.0 * 100, abs=1e-3)
    assert far[0] - 50 == pytest.approx(FFHQ_FOCAL * 0.1 / 3.0 * 100, abs=1e-3)


# --- canonical → world ---


def test_canonical_to_world_puts_the_nose_on_the_pivot_and_scales_centimetres():
    nose = canonical_face().vertices[NOSE_TIP]
    np.testing.assert_allclose(canonical_to_world(nose), PIVOT, atol=1e-12)
    np.testing.assert_allclose(world_landmarks()[NOSE_TIP], PIVOT, atol=1e-12)
    left, right = canonical_to_world(np.array([[-7.65, 1.0, 2.0], [7.65, 1.0, 2.0]]))
    assert np.linalg.norm(right - left) == pytest.approx(0.306, abs=1e-12)
    assert WORLD_SCALE == 0.02
    assert world_landmarks().shape == (468, 3)
