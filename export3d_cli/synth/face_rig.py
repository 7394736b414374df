"""A face rig on MediaPipe's canonical mesh: identity shape and expression controls.

Identity shape (``FaceShape``) deforms the canonical mesh once; expressions then
move it per frame. All displacements are smooth radial-basis blends around
landmark rings (MediaPipe topology), so the deformed mesh stays a MediaPipe face
and its vertices are exact ground-truth landmarks. Distances are centimetres in
the canonical frame (y up, the face looking to +z, +x on the subject's left):
"left" controls move the subject's left side.

The canonical mesh has the lips slightly apart; the rest pose seals them (a
closed mouth at jaw_open = 0). The mouth and eye openings are holes in the
rendered mesh (``open_triangles`` removed) with eyeballs and a mouth cavity behind.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from export3d_cli.face.canonical_face import canonical_face
from export3d_cli.synth.identity import FaceShape

CONTROL_NAMES = (
    "jaw_open",
    "smile_left",
    "smile_right",
    "blink_left",
    "blink_right",
    "brow_raise",
    "brow_lower",
    "pucker",
)
CONTROL_INDEX = {name: index for index, name in enumerate(CONTROL_NAMES)}

OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
INNER_LIPS = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
# The rings above list the lower lid first (outer corner → inner corner), then the upper lid back.
RIGHT_EYE_LOWER, RIGHT_EYE_UPPER = RIGHT_EYE[1:8], RIGHT_EYE[9:]
LEFT_EYE_LOWER, LEFT_EYE_UPPER = LEFT_EYE[1:8], LEFT_EYE[9:]
UPPER_INNER_LIPS = (191, 80, 81, 82, 13, 312, 311, 310, 415)
LOWER_INNER_LIPS = (95, 88, 178, 87, 14, 317, 402, 318, 324)
UPPER_OUTER_LIPS = (185, 40, 39, 37, 0, 267, 269, 270, 409)
LOWER_OUTER_LIPS = (146, 91, 181, 84, 17, 314, 405, 321, 375)
MOUTH_CORNERS = (61, 291, 78, 308)
RIGHT_MOUTH_CORNER, LEFT_MOUTH_CORNER = 61, 291
RIGHT_CHEEK, LEFT_CHEEK = 50, 280
CHIN = 152
NOSE_TIP = 4

JAW_PIVOT = np.array([0.0, 0.5, -2.5])  # y, z of the jaw hinge (near the ears)
JAW_MAX_ANGLE = math.radians(14.0)
JAW_MAX_SHIFT = np.array([0.0, -1.2, 1.3])  # the condyle glides forward as the jaw opens


def _rbf(points: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian weights [N] of ``points`` [N, 3] around ``centre`` [3]."""
    return np.exp(-((points - centre) ** 2).sum(axis=1) / (2.0 * sigma * sigma))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ring_curve(vertices: np.ndarray, ring: tuple[int, ...], axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The ring as a function of x: (sorted x, value along ``axis``), for np.interp."""
    points = vertices[list(ring)]
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, axis]


def open_triangles() -> np.ndarray:
    """Indices of canonical triangles spanning the mouth (18) or an eye (14 each): removed to open holes."""
    triangles = canonical_face().triangles
    openings = [set(INNER_LIPS), set(RIGHT_EYE), set(LEFT_EYE)]
    spanning = [i for i, tri in enumerate(triangles) if any(all(v in ring for v in tri) for ring in openings)]
    return np.array(spanning, dtype=np.int64)


def boundary_loop() -> np.ndarray:
    """The canonical mesh's outer rim [36] as a closed vertex loop, counter-clockwise seen from the front."""
    triangles = canonical_face().triangles
    edge_count: dict[tuple[int, int], int] = {}
    for tri in triangles:
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            key = (min(a, b), max(a, b))
            edge_count[key] = edge_count.get(key, 0) + 1
    following = {}
    for tri in triangles:
        for a, b in ((tri[0], tri[1]), (tri[1], tri[2]), (tri[2], tri[0])):
            if edge_count[(min(a, b), max(a, b))] == 1:
                following[int(a)] = int(b)
    start = min(following)
    loop = [start]
    while following[loop[-1]] != start:
        loop.append(following[loop[-1]])
    return np.array(loop, dtype=np.int64)


def jaw_rotation(amount: float) -> tuple[np.ndarray, np.ndarray]:
    """Rigid jaw motion for ``amount`` in [0, 1]: rotation [3, 3] about the hinge and a shift [3]."""
    angle = JAW_MAX_ANGLE * amount
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    return rotation, JAW_MAX_SHIFT * amount


def move_with_jaw(points: np.ndarray, amount: float, weights: np.ndarray | float = 1.0) -> np.ndarray:
    """Points [N, 3] moved by the jaw (blended by ``weights`` in [0, 1])."""
    rotation, shift = jaw_rotation(amount)
    moved = (points - JAW_PIVOT) @ rotation.T + JAW_PIVOT + shift
    weights = np.asarray(weights, dtype=np.float64)
    return points + (moved - points) * (weights[:, None] if weights.ndim else weights)


@dataclass(frozen=True)
class _EyeRig:
    lower: tuple[np.ndarray, np.ndarray]  # lower lid y(x)
    upper: tuple[np.ndarray, np.ndarray]  # upper lid y(x)
    lower_z: tuple[np.ndarray, np.ndarray]
    upper_z: tuple[np.ndarray, np.ndarray]
    weights: np.ndarray  # [468] how much each vertex follows the upper lid
    centre: np.ndarray


class FaceRig:
    """Identity-shaped canonical face; ``pose(controls)`` gives the expressive mesh [468, 3]."""

    def __init__(self, shape: FaceShape) -> None:
        canonical = canonical_face().vertices.astype(np.float64)
        self.rest = self._seal_lips(self._apply_shape(canonical, shape))
        rest = self.rest
        self.jaw_weights = self._jaw_weights(canonical)
        self.eyes = {"right": self._eye_rig(rest, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER, RIGHT_EYE)}
        self.eyes["left"] = self._eye_rig(rest, LEFT_EYE_LOWER, LEFT_EYE_UPPER, LEFT_EYE)
        brows = rest[list(RIGHT_BROW + LEFT_BROW)]
        brow_distance = np.min(np.linalg.norm(rest[:, None, :2] - brows[None, :, :2], axis=2), axis=1)
        brow_y = brows[:, 1].mean()
        above = np.clip(rest[:, 1] - brow_y, 0.0, None)
        self.brow_weights = np.maximum(np.exp(-(brow_distance**2) / (2 * 1.1**2)), np.exp(-above / 2.5) * (above > 0))
        self.brow_weights *= _smoothstep((rest[:, 1] - (brow_y - 2.2)) / 1.0)  # fades out above the eyes
        self.brow_weights[boundary_loop()] = 0.0  # the rim stays joined to the scalp
        self.mouth_centre = rest[list(INNER_LIPS)].mean(axis=0)
        self.mouth_weights = _rbf(rest, self.mouth_centre, 1.4)

    # --- identity -----------------------------------------------------------------------------------

    @staticmethod
    def _apply_shape(vertices: np.ndarray, shape: FaceShape) -> np.ndarray:
        v = vertices.copy()
        nose_tip = vertices[NOSE_TIP]
        nose_tip_weight = _rbf(vertices, nose_tip, 1.1)
        nose_weight = np.exp(-(vertices[:, 0] ** 2) / (2 * 1.3**2) - (vertices[:, 1] - 0.8) ** 2 / (2 * 2.2**2))
        nose_weight *= _smoothstep((vertices[:, 2] - 4.5) / 1.5)
        v[:, 2] += shape.nose_length * nose_tip_weight
        v[:, 0] *= 1.0 + (shape.nose_width - 1.0) * nose_weight
        v[:, 0] *= 1.0 + shape.jaw_width * _smoothstep((-2.0 - vertices[:, 1]) / 5.0)
        chin_weight = _rbf(vertices, vertices[CHIN], 1.9)
        v[:, 1] -= shape.chin_length * chin_weight
        v[:, 2] += shape.chin_forward * chin_weight
        for ring in (RIGHT_EYE, LEFT_EYE):
            centre = vertices[list(ring)].mean(axis=0)
            weight = _rbf(vertices, centre, 1.0)[:, None]
            v[:, :2] = centre[:2] + (v[:, :2] - centre[:2]) * (1.0 + (shape.eye_size - 1.0) * weight)
        for side in (-1.0, 1.0):
            weight = _rbf(vertices, np.array([5.4 * side, 0.9, 2.2]), 1.6)
            v[:, 0] += side * shape.cheekbones * weight
            v[:, 2] += 0.3 * shape.cheekbones * weight
        mouth = vertices[list(INNER_LIPS)].mean(axis=0)
        v[:, 0] = mouth[0] + (v[:, 0] - mouth[0]) * (1.0 + (shape.mouth_width - 1.0) * _rbf(vertices, mouth, 1.6))
        return v * np.array([shape.width, shape.height, shape.depth])

    @staticmethod
    def _seal_lips(vertices: np.ndarray) -> np.ndarray:
        v = vertices.copy()
        upper, lower = list(UPPER_INNER_LIPS), list(LOWER_INNER_LIPS)
        # Both rings run from the subject's right to left: pair each upper vertex with the one below it.
        for top, bottom in zip(upper, lower, strict=True):
            middle = 0.5 * (v[top] + v[bottom])
            v[top, 1:] = middle[1:]
            v[bottom, 1:] = middle[1:]
        return v

    # --- expression weights (from the canonical, not the sealed, positions) -------------------------------

    @staticmethod
    def _jaw_weights(canonical: np.ndarray) -> np.ndarray:
        x, y = np.abs(canonical[:, 0]), canonical[:, 1]
        mouth_line = -4.27 + np.clip(x - 2.3, 0.0, None) * (4.27 / 5.4)  # rises from the mouth corners to the ear
        band = 0.35 + np.clip(x - 2.3, 0.0, None) * 0.35
        weights = _smoothstep((mouth_line - y) / band + 0.5)
        weights[list(UPPER_INNER_LIPS + UPPER_OUTER_LIPS)] = 0.0
        weights[list(LOWER_INNER_LIPS + LOWER_OUTER_LIPS)] = 1.0
        weights[list(MOUTH_CORNERS)] = 0.5
        return weights

    @staticmethod
    def _eye_rig(rest: np.ndarray, lower_ring: tuple, upper_ring: tuple, ring: tuple) -> _EyeRig:
        corners = (ring[0], ring[8])
        lower = _ring_curve(rest, (*corners, *lower_ring), 1)
        upper = _ring_curve(rest, (*corners, *upper_ring), 1)
        lower_z = _ring_curve(rest, (*corners, *lower_ring), 2)
        upper_z = _ring_curve(rest, (*corners, *upper_ring), 2)
        x0, x1 = upper[0][0], upper[0][-1]
        centre = rest[list(ring)].mean(axis=0)
        half_width = 0.5 * (x1 - x0)
        along = np.clip(1.0 - ((rest[:, 0] - centre[0]) / (half_width + 0.2)) ** 4, 0.0, 1.0)
        lid_y = np.interp(rest[:, 0], *upper)
        above = rest[:, 1] - lid_y
        weights = along * np.where(above >= -0.02, np.exp(-np.clip(above, 0.0, None) / 0.45), 0.0)
        weights *= rest[:, 2] > centre[2] - 1.5  # not the far side of the head
        weights[list(upper_ring)] = along[list(upper_ring)]
        return _EyeRig(lower, upper, lower_z, upper_z, weights, centre)

    # --- posing ---------------------------------------------------------------------------------------------

    def pose(self, controls: np.ndarray) -> np.ndarray:
        """Vertices [468, 3] for expression ``controls`` [8] (values in [0, 1], see CONTROL_NAMES)."""
        c = dict(zip(CONTROL_NAMES, np.clip(np.asarray(controls, dtype=np.float64), 0.0, 1.0), strict=True))
        v = self.rest.copy()
        rest = self.rest
        for eye, amount in (("right", c["blink_right"]), ("left", c["blink_left"])):
            rig = self.eyes[eye]
            gap_y = np.interp(rest[:, 0], *rig.lower) - np.interp(rest[:, 0], *rig.upper)
            gap_z = np.interp(rest[:, 0], *rig.lower_z) - np.interp(rest[:, 0], *rig.upper_z)
            v[:, 1] += 0.97 * amount * gap_y * rig.weights
            v[:, 2] += 0.97 * amount * gap_z * rig.weights
        for side, corner, cheek, amount in (
            (-1.0, RIGHT_MOUTH_CORNER, RIGHT_CHEEK, c["smile_right"]),
            (1.0, LEFT_MOUTH_CORNER, LEFT_CHEEK, c["smile_left"]),
        ):
            corner_weight = _rbf(rest, rest[corner], 1.15)[:, None]
            cheek_weight = _rbf(rest, rest[cheek], 1.7)[:, None]
            v += amount * corner_weight * np.array([0.6 * side, 0.55, -0.3])
            v += amount * cheek_weight * np.array([0.1 * side, 0.35, 0.25])
        brow = self.brow_weights
        v[:, 1] += 0.85 * c["brow_raise"] * brow - 0.45 * c["brow_lower"] * brow
        inner = brow * np.exp(-(rest[:, 0] ** 2) / (2 * 1.8**2))
        v[:, 0] -= 0.35 * c["brow_lower"] * inner * np.sign(rest[:, 0])
        pucker = c["pucker"] * self.mouth_weights
        v[:, 0] = self.mouth_centre[0] + (v[:, 0] - self.mouth_centre[0]) * (1.0 - 0.35 * pucker)
        v[:, 2] += 0.6 * pucker
        return move_with_jaw(v, c["jaw_open"], self.jaw_weights)
