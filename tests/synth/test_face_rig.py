"""Tests of the synthetic face rig: mesh openings, rest pose, identity shape and each expression control.

Canonical frame: centimetres, y up, the face looking to +z, +x on the subject's LEFT. MediaPipe landmarks used:
13/14 inner upper/lower lip centre, 10 forehead, 61/291 right/left mouth corner, 386/374 left upper/lower lid,
159/145 right upper/lower lid, 105/334 right/left brow, 234/454 right/left face contour, 33/263 eye outer corners.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from export3d_cli.face.canonical_face import canonical_face
from export3d_cli.synth.face_rig import (
    CONTROL_INDEX,
    CONTROL_NAMES,
    INNER_LIPS,
    LEFT_EYE,
    LOWER_INNER_LIPS,
    RIGHT_EYE,
    UPPER_INNER_LIPS,
    FaceRig,
    boundary_loop,
    open_triangles,
)
from export3d_cli.synth.identity import FaceShape, random_identity

MM = 0.1  # one millimetre in canonical centimetres


def neutral_shape() -> FaceShape:
    return FaceShape.neutral()


def controls(**amounts: float) -> np.ndarray:
    """A control vector [8] with the named controls set (others 0)."""
    vector = np.zeros(len(CONTROL_NAMES))
    for name, amount in amounts.items():
        vector[CONTROL_INDEX[name]] = amount
    return vector


def mirror_permutation() -> np.ndarray:
    """[468]: index of each canonical vertex's mirror image (x -> -x); the canonical mesh is exactly symmetric."""
    vertices = canonical_face().vertices.astype(np.float64)
    mirrored = vertices * np.array([-1.0, 1.0, 1.0])
    distances = np.linalg.norm(mirrored[:, None, :] - vertices[None, :, :], axis=2)
    permutation = distances.argmin(axis=1)
    assert distances.min(axis=1).max() < 1e-5
    return permutation


def mirrored(vertices: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    return vertices[permutation] * np.array([-1.0, 1.0, 1.0])


@pytest.fixture(scope="module")
def rig() -> FaceRig:
    return FaceRig(neutral_shape())


@pytest.fixture(scope="module")
def identity_rigs() -> list[FaceRig]:
    return [FaceRig(random_identity(index, 7).shape) for index in range(4)]


# ------------------------------------------------------------------------------------------------- topology


def test_open_triangles_are_the_18_mouth_and_2x14_eye_triangles():
    triangles = canonical_face().triangles
    opened = open_triangles()
    assert len(opened) == 18 + 14 + 14
    assert len(set(opened.tolist())) == len(opened)
    counts = []
    for ring in (INNER_LIPS, RIGHT_EYE, LEFT_EYE):
        counts.append(sum(all(int(v) in ring for v in triangles[i]) for i in opened))
    assert counts == [18, 14, 14]


def test_boundary_loop_is_a_closed_loop_of_36_distinct_rim_vertices():
    triangles = canonical_face().triangles
    loop = boundary_loop()
    assert loop.shape == (36,)
    assert len(set(loop.tolist())) == 36
    edges: dict[tuple[int, int], int] = {}
    for tri in triangles:
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            key = (min(int(a), int(b)), max(int(a), int(b)))
            edges[key] = edges.get(key, 0) + 1
    rim_edges = {key for key, count in edges.items() if count == 1}
    loop_edges = {(min(a, b), max(a, b)) for a, b in zip(loop.tolist(), np.roll(loop, -1).tolist(), strict=True)}
    assert loop_edges == rim_edges  # consecutive (and last -> first) vertices share a boundary edge: closed


def test_boundary_loop_runs_counter_clockwise_seen_from_the_front():
    # Seen from the front (from +z), the subject's left (+x) is on the viewer's right: (x, y) are the view's axes.
    rim = canonical_face().vertices[boundary_loop()][:, :2].astype(np.float64)
    signed_area = 0.5 * np.sum(rim[:, 0] * np.roll(rim[:, 1], -1) - np.roll(rim[:, 0], -1) * rim[:, 1])
    assert signed_area > 0


# ------------------------------------------------------------------------------------------------- rest pose


def test_canonical_lips_are_apart_and_the_rest_pose_seals_them(rig, identity_rigs):
    canonical = canonical_face().vertices.astype(np.float64)
    assert abs(canonical[13, 1] - canonical[14, 1]) > 0.05  # the canonical mesh has the lips apart
    for face in [rig, *identity_rigs]:
        upper = face.rest[list(UPPER_INNER_LIPS)]
        lower = face.rest[list(LOWER_INNER_LIPS)]
        np.testing.assert_allclose(upper[:, 1:], lower[:, 1:], atol=1e-12)


def test_rest_pose_keeps_both_eyes_open(identity_rigs):
    for face in identity_rigs:
        assert face.rest[386, 1] - face.rest[374, 1] > 0.3
        assert face.rest[159, 1] - face.rest[145, 1] > 0.3


def test_pose_of_zero_controls_is_the_rest_pose(rig, identity_rigs):
    for face in [rig, *identity_rigs]:
        np.testing.assert_allclose(face.pose(np.zeros(len(CONTROL_NAMES))), face.rest, atol=1e-12)


def test_neutral_rest_pose_is_mirror_symmetric(rig):
    permutation = mirror_permutation()
    np.testing.assert_allclose(mirrored(rig.rest, permutation), rig.rest, atol=1e-9)


# ------------------------------------------------------------------------------------------------- jaw


def test_jaw_open_drops_the_lower_lip_and_leaves_the_upper_face_in_place(rig, identity_rigs):
    for face in [rig, *identity_rigs]:
        posed = face.pose(controls(jaw_open=1.0))
        assert face.rest[14, 1] - posed[14, 1] > 2.0
        assert np.linalg.norm(posed[13] - face.rest[13]) < MM
        assert np.linalg.norm(posed[10] - face.rest[10]) < MM
        assert face.rest[152, 1] - posed[152, 1] > 1.0  # the chin goes down with the jaw


def test_jaw_opening_is_monotonic_in_the_control(rig):
    drops = [rig.rest[14, 1] - rig.pose(controls(jaw_open=amount))[14, 1] for amount in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert np.all(np.diff(drops) > 0.2)


# ------------------------------------------------------------------------------------------------- eyes


@pytest.mark.parametrize(
    ("control", "closed", "still_open"),
    [("blink_left", (386, 374), (159, 145)), ("blink_right", (159, 145), (386, 374))],
    ids=["left", "right"],
)
def test_blink_closes_only_its_own_eye(rig, identity_rigs, control, closed, still_open):
    for face in [rig, *identity_rigs]:
        posed = face.pose(controls(**{control: 1.0}))
        upper, lower = closed
        assert abs(posed[upper, 1] - posed[lower, 1]) < 0.1
        other_upper, other_lower = still_open
        rest_gap = face.rest[other_upper, 1] - face.rest[other_lower, 1]
        assert posed[other_upper, 1] - posed[other_lower, 1] == pytest.approx(rest_gap, abs=1e-3)


def test_blink_left_acts_on_the_subjects_left_eye_at_positive_x(rig):
    assert rig.rest[386, 0] > 0 > rig.rest[159, 0]
    moved = np.linalg.norm(rig.pose(controls(blink_left=1.0)) - rig.rest, axis=1) > 0.05
    assert moved.any()
    assert np.all(rig.rest[moved, 0] > 0)


def test_blink_left_mirrors_blink_right_on_a_neutral_face(rig):
    permutation = mirror_permutation()
    left = rig.pose(controls(blink_left=1.0))
    right = rig.pose(controls(blink_right=1.0))
    np.testing.assert_allclose(mirrored(left, permutation), right, atol=1e-6)


# ------------------------------------------------------------------------------------------------- mouth


def test_smile_right_raises_the_right_corner_outwards_and_leaves_the_left_one(rig, identity_rigs):
    for face in [rig, *identity_rigs]:
        posed = face.pose(controls(smile_right=1.0))
        assert face.rest[61, 0] < 0
        assert posed[61, 1] - face.rest[61, 1] > 0.3
        assert posed[61, 0] - face.rest[61, 0] < -0.3
        assert np.linalg.norm(posed[291] - face.rest[291]) < MM


def test_smile_left_mirrors_smile_right_on_a_neutral_face(rig):
    permutation = mirror_permutation()
    left = rig.pose(controls(smile_left=1.0))
    right = rig.pose(controls(smile_right=1.0))
    np.testing.assert_allclose(mirrored(left, permutation), right, atol=1e-6)
    assert left[291, 1] - rig.rest[291, 1] > 0.3
    assert left[291, 0] - rig.rest[291, 0] > 0.3


def test_pucker_narrows_the_mouth_and_pushes_the_lips_forward(rig, identity_rigs):
    for face in [rig, *identity_rigs]:
        posed = face.pose(controls(pucker=1.0))
        rest_width = np.linalg.norm(face.rest[61] - face.rest[291])
        assert np.linalg.norm(posed[61] - posed[291]) < rest_width - 0.2
        assert posed[13, 2] - face.rest[13, 2] > 0.3
        assert posed[14, 2] - face.rest[14, 2] > 0.3


# ------------------------------------------------------------------------------------------------- brows


def test_brow_raise_lifts_the_brows_and_the_forehead_follows(rig, identity_rigs):
    for face in [rig, *identity_rigs]:
        posed = face.pose(controls(brow_raise=1.0))
        assert posed[105, 1] - face.rest[105, 1] > 0.5
        assert posed[334, 1] - face.rest[334, 1] > 0.5
        assert posed[151, 1] - face.rest[151, 1] > 0.05  # mid-forehead, above the brows


def test_brow_lower_lowers_the_brows(rig, identity_rigs):
    for face in [rig, *identity_rigs]:
        posed = face.pose(controls(brow_lower=1.0))
        assert face.rest[105, 1] - posed[105, 1] > 0.2
        assert face.rest[334, 1] - posed[334, 1] > 0.2


@pytest.mark.parametrize("control", ["brow_raise", "brow_lower"])
def test_brow_controls_leave_the_eye_corners_lower_lids_and_lower_face_in_place(identity_rigs, control):
    for face in identity_rigs:
        moved = np.linalg.norm(face.pose(controls(**{control: 1.0})) - face.rest, axis=1)
        assert moved[[33, 263, 133, 362]].max() < 2 * MM  # eye corners: at most a faint pull
        assert moved[[145, 374, 4, 61, 291, 14, 152]].max() < 0.5 * MM  # lower lids, nose tip, mouth, chin


# ------------------------------------------------------------------------------------------------- identity shape


def test_width_factor_widens_the_face_proportionally(rig):
    wide = FaceRig(dataclasses.replace(neutral_shape(), width=1.1))
    ratio = np.linalg.norm(wide.rest[234] - wide.rest[454]) / np.linalg.norm(rig.rest[234] - rig.rest[454])
    assert ratio == pytest.approx(1.1, rel=0.01)
    assert wide.rest[10, 1] == pytest.approx(rig.rest[10, 1], abs=1e-9)  # height untouched


def test_nose_length_moves_the_nose_tip_forward_only(rig):
    long_nose = FaceRig(dataclasses.replace(neutral_shape(), nose_length=0.4))
    shift = long_nose.rest[4] - rig.rest[4]
    assert shift[2] == pytest.approx(0.4, abs=0.01)
    assert abs(shift[0]) < 1e-9
    assert abs(shift[1]) < 1e-9


def test_different_identities_have_different_faces(identity_rigs):
    first, second = identity_rigs[:2]
    assert np.abs(first.rest - second.rest).max() > 0.1


# ------------------------------------------------------------------------------------------------- controls


def test_every_pose_is_finite_for_random_controls(identity_rigs):
    rng = np.random.default_rng(3)
    for face in identity_rigs:
        for _ in range(10):
            posed = face.pose(rng.uniform(0.0, 1.0, len(CONTROL_NAMES)))
            assert posed.shape == (468, 3)
            assert np.isfinite(posed).all()


def test_controls_are_clipped_to_the_unit_range(rig):
    ones = np.ones(len(CONTROL_NAMES))
    np.testing.assert_array_equal(rig.pose(2.0 * ones), rig.pose(ones))
    np.testing.assert_array_equal(rig.pose(-ones), rig.pose(np.zeros(len(CONTROL_NAMES))))


def test_pose_does_not_change_the_rest_pose_or_the_input(rig):
    before = rig.rest.copy()
    vector = controls(jaw_open=0.7, blink_left=0.4, pucker=0.5)
    original = vector.copy()
    rig.pose(vector)
    np.testing.assert_array_equal(rig.rest, before)
    np.testing.assert_array_equal(vector, original)
