"""Head pose → EG3D camera label p ∈ R^25 (DESIGN §4, ``eg3d-conventions.md`` §2).

The model's world is the canonical head: MediaPipe's canonical face mesh
(centimetres, y up, face looking to +z) scaled by ``WORLD_SCALE`` and moved so
that the nose tip sits on EG3D's look-at pivot (0, 0, 0.2). The head stays
fixed and the camera moves, as in EG3D's FFHQ labels.

The head rotation comes from a weighted orthographic Procrustes fit of the
canonical rigid landmarks (MediaPipe's own pose basis) to the detected 3-D
landmarks in image space. It sees only the face's appearance — what an aligned
crop shows — so a face moved around the picture keeps its pose. (MediaPipe's
facial transformation matrix is not used: it is fitted through an assumed 63°
perspective camera, so the same face moved 150 px off-centre changes its yaw by
more than 10°.) The rotation maps the head frame to image axes with y up and z
towards the viewer (OpenGL camera axes); OpenGL (x, y, z) is OpenCV (x, −y, −z),
so with the head as the world, cam2world's rotation is
``rotation.T @ diag(1, -1, -1)``. The camera centre is put on the radius-2.7
sphere about the origin, looking at the pivot, exactly where EG3D's look-at
sampler puts it (a roll-free pose gives the sampler's label to float precision).

Angles reported by ``yaw_pitch_roll`` invert the look-at sampler: yaw > 0 puts the
camera at +x (the subject's left), pitch > 0 puts it below the face, roll > 0
means the face appears turned anticlockwise in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from export3d_cli.camera_conventions import CAMERA_PIVOT, CAMERA_RADIUS, FFHQ_FOCAL
from export3d_cli.face.canonical_face import canonical_face

WORLD_SCALE = 0.02  # world units per canonical centimetre: a 15 cm wide face spans ~48% of a frontal crop
NOSE_TIP = 4  # canonical landmark placed on the pivot, so crops have the nose at the centre
_PIVOT = np.array(CAMERA_PIVOT)
_GL_TO_CV = np.diag([1.0, -1.0, -1.0])


def canonical_to_world(points: np.ndarray) -> np.ndarray:
    """Canonical face coordinates (cm) → model world coordinates. Shapes: [..., 3] -> [..., 3]."""
    nose = canonical_face().vertices[NOSE_TIP].astype(np.float64)
    return WORLD_SCALE * (np.asarray(points, dtype=np.float64) - nose) + _PIVOT


def world_landmarks() -> np.ndarray:
    """The canonical landmarks in world coordinates [468, 3]."""
    return canonical_to_world(canonical_face().vertices)


def ffhq_intrinsics() -> np.ndarray:
    """Normalised FFHQ intrinsics [3, 3]."""
    return np.array([[FFHQ_FOCAL, 0.0, 0.5], [0.0, FFHQ_FOCAL, 0.5], [0.0, 0.0, 1.0]])


def rotation_from_vector(vector: np.ndarray) -> np.ndarray:
    """Rodrigues: axis-angle vector [3] (angle = norm, radians) → rotation [3, 3]."""
    angle = float(np.linalg.norm(vector))
    if angle < 1e-12:
        return np.eye(3)
    x, y, z = np.asarray(vector, dtype=np.float64) / angle
    k = np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def rotation_to_vector(rotation: np.ndarray) -> np.ndarray:
    """Inverse of ``rotation_from_vector`` for angles below π. Shapes: [3, 3] -> [3]."""
    cos = np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)
    angle = math.acos(cos)
    skew = np.array([rotation[2, 1] - rotation[1, 2], rotation[0, 2] - rotation[2, 0], rotation[1, 0] - rotation[0, 1]])
    if angle < 1e-7:
        return skew / 2.0
    return skew * (angle / (2.0 * math.sin(angle)))


def _camera_distance(forward: np.ndarray) -> float:
    """Distance t from the camera to the pivot along ``forward`` that puts the camera at CAMERA_RADIUS."""
    along = float(np.dot(_PIVOT, forward))
    return along + math.sqrt(along * along - float(np.dot(_PIVOT, _PIVOT)) + CAMERA_RADIUS**2)


@dataclass(frozen=True)
class HeadPose:
    """Head rotation [3, 3]: head (world) frame → image axes (x right, y up, z towards the viewer)."""

    rotation: np.ndarray

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> HeadPose:
        """From MediaPipe's image-space 3-D landmarks [>=468, 3] (x right, y down, z away, all in pixels).

        A weighted orthographic Procrustes fit of the canonical rigid landmarks: it sees only the face's own
        appearance, so moving a face around the picture does not change its pose.
        """
        face = canonical_face()
        indices = face.procrustes_indices
        observed = np.asarray(landmarks, dtype=np.float64)[indices, :3] * np.array([1.0, -1.0, -1.0])  # y up, z out
        model = face.vertices[indices].astype(np.float64)
        weights = face.procrustes_weights.astype(np.float64)
        weights = weights / weights.sum()
        observed_centred = observed - weights @ observed
        model_centred = model - weights @ model
        covariance = (observed_centred * weights[:, None]).T @ model_centred  # [3, 3]
        u, _, vt = np.linalg.svd(covariance)
        correction = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
        return cls(u @ correction @ vt)

    @classmethod
    def from_rotation_vector(cls, vector: np.ndarray) -> HeadPose:
        return cls(rotation_from_vector(vector))

    @classmethod
    def from_cam2world(cls, cam2world: np.ndarray) -> HeadPose:
        """Inverse of ``cam2world`` (the camera centre is implied by its rotation)."""
        return cls((np.asarray(cam2world, dtype=np.float64)[:3, :3] @ _GL_TO_CV).T)

    def rotation_vector(self) -> np.ndarray:
        """Axis-angle [3]: a chart without wrap-around for head poses, used for smoothing and filling gaps."""
        return rotation_to_vector(self.rotation)

    def cam2world(self) -> np.ndarray:
        """OpenCV camera-to-world [4, 4] on the radius-2.7 sphere, looking at the pivot."""
        rotation = self.rotation.T @ _GL_TO_CV  # columns: right, down, forward
        forward = rotation[:, 2]
        matrix = np.eye(4)
        matrix[:3, :3] = rotation
        matrix[:3, 3] = _PIVOT - _camera_distance(forward) * forward
        return matrix

    def label(self) -> np.ndarray:
        """EG3D label [25] float32: cam2world row-major, then FFHQ intrinsics row-major."""
        return np.concatenate([self.cam2world().reshape(16), ffhq_intrinsics().reshape(9)]).astype(np.float32)

    def yaw_pitch_roll(self) -> tuple[float, float, float]:
        """Degrees. yaw/pitch invert EG3D's look-at sampler; roll > 0: the face appears turned anticlockwise."""
        return label_angles(self.label())


def label_angles(label: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of an EG3D label [25] (see ``HeadPose.yaw_pitch_roll``)."""
    cam2world = np.asarray(label, dtype=np.float64)[:16].reshape(4, 4)
    origin = cam2world[:3, 3]
    radius = np.linalg.norm(origin)
    phi = math.acos(float(np.clip(origin[1] / radius, -1.0, 1.0)))
    vertical = math.pi * (1.0 - math.cos(phi)) / 2.0
    theta = math.pi - math.atan2(origin[2], origin[0])
    yaw = theta - math.pi / 2
    pitch = vertical - math.pi / 2
    forward = cam2world[:3, 2]
    level_right = -np.cross([0.0, 1.0, 0.0], forward)
    level_right /= np.linalg.norm(level_right)
    right = cam2world[:3, 0]
    roll = math.atan2(float(np.dot(np.cross(level_right, right), forward)), float(np.dot(level_right, right)))
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def look_at_pose(yaw_degrees: float, pitch_degrees: float) -> HeadPose:
    """The head pose whose label is EG3D's look-at camera at (yaw, pitch) — the inverse of ``label_angles``."""
    yaw, pitch = math.radians(yaw_degrees), math.radians(pitch_degrees)
    vertical = min(max(math.pi / 2 + pitch, 1e-5), math.pi - 1e-5)
    phi = math.acos(1.0 - 2.0 * vertical / math.pi)
    theta = math.pi / 2 + yaw
    origin = CAMERA_RADIUS * np.array(
        [math.sin(phi) * math.cos(math.pi - theta), math.cos(phi), math.sin(phi) * math.sin(math.pi - theta)]
    )
    forward = (_PIVOT - origin) / np.linalg.norm(_PIVOT - origin)
    right = -np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    cam2world = np.eye(4)
    cam2world[:3, :3] = np.stack([right, down, forward], axis=1)
    return HeadPose.from_cam2world(cam2world)


def project_to_crop(points: np.ndarray, label: np.ndarray, resolution: int) -> np.ndarray:
    """Project world points through an EG3D camera into crop pixel coordinates.

    Continuous coordinates with (0, 0) at the crop's top-left corner: pixel (i, j)
    covers [j, j+1) x [i, i+1), matching the ray through its centre u = (j + 0.5)/R.
    Shapes: points [N, 3], label [25] -> [N, 2] (x, y).
    """
    label = np.asarray(label, dtype=np.float64)
    cam2world = label[:16].reshape(4, 4)
    intrinsics = label[16:].reshape(3, 3)
    camera_points = (np.asarray(points, dtype=np.float64) - cam2world[:3, 3]) @ cam2world[:3, :3]  # [N, 3]
    normalised = camera_points @ intrinsics.T
    return normalised[:, :2] / normalised[:, 2:3] * resolution
