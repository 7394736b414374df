"""The parts of a synthetic head that MediaPipe's face mesh does not have.

Eyeballs behind the eye openings, a mouth cavity with tongue and teeth behind
the lips (the lower half moves with the jaw), skull, hair, ears, neck and
shoulders. Each part is a small triangle mesh in canonical centimetres with
analytic outward normals and "local" coordinates that its material uses for
procedural texture (e.g. the direction from an eyeball's centre picks sclera,
iris or pupil).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from export3d_cli.synth.face_rig import INNER_LIPS, LEFT_EYE, RIGHT_EYE, FaceRig, boundary_loop
from export3d_cli.synth.identity import Identity

EYEBALL_RADIUS = 1.2
IRIS_RADIUS = 0.58
PUPIL_RADIUS = 0.24


class Material(enum.IntEnum):
    FACE = 0  # UV-textured canonical face mesh
    SKIN = 1
    HAIR = 2
    EYE = 3
    MOUTH = 4
    TEETH = 5
    CLOTHING = 6


@dataclass(frozen=True)
class MeshPart:
    """Shapes: vertices/normals/local [N, 3], triangles [M, 3]; jaw [N] = how much a vertex follows the jaw."""

    material: Material
    vertices: np.ndarray
    normals: np.ndarray
    local: np.ndarray
    triangles: np.ndarray
    jaw: np.ndarray


def _grid_triangles(rows: int, columns: int, wrap: bool) -> np.ndarray:
    """Triangles of a rows×columns vertex grid (two per cell), optionally wrapping the columns."""
    cells_x = columns if wrap else columns - 1
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(cells_x), indexing="ij")
    r, c = r.ravel(), c.ravel()
    a = r * columns + c
    b = r * columns + (c + 1) % columns
    d = (r + 1) * columns + c
    e = (r + 1) * columns + (c + 1) % columns
    return np.concatenate([np.stack([a, d, b], 1), np.stack([b, d, e], 1)]).astype(np.int64)


def ellipsoid(
    centre: np.ndarray,
    radii: np.ndarray,
    rows: int = 24,
    columns: int = 32,
    keep: callable | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(vertices, normals, unit directions, triangles) of an ellipsoid; ``keep(directions)`` masks triangles."""
    polar = np.linspace(0.0, np.pi, rows)
    azimuth = np.linspace(0.0, 2 * np.pi, columns, endpoint=False)
    p, a = np.meshgrid(polar, azimuth, indexing="ij")
    # Polar angle from +y (top of the head); azimuth 0 faces +z (the front).
    directions = np.stack([np.sin(p) * np.sin(a), np.cos(p), np.sin(p) * np.cos(a)], axis=-1).reshape(-1, 3)
    vertices = centre + directions * radii
    normals = directions / radii
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    triangles = _grid_triangles(rows, columns, wrap=True)
    if keep is not None:
        triangles = triangles[keep(directions)[triangles].all(axis=1)]
    return vertices, normals, directions, triangles


def _part(material: Material, mesh: tuple, jaw: np.ndarray | float = 0.0) -> MeshPart:
    vertices, normals, local, triangles = mesh
    jaw_weights = np.broadcast_to(np.asarray(jaw, dtype=np.float64), (len(vertices),)).copy()
    return MeshPart(material, vertices, normals, local, triangles, jaw_weights)


def eyeball_centres(rig: FaceRig) -> tuple[np.ndarray, np.ndarray]:
    """Right and left eyeball centres: behind each opening, the front of the ball just behind the lids."""
    centres = []
    for ring in (RIGHT_EYE, LEFT_EYE):
        opening = rig.rest[list(ring)]
        centre = opening.mean(axis=0)
        centre[2] = opening[:, 2].max() - 0.08 - EYEBALL_RADIUS
        centres.append(centre)
    return centres[0], centres[1]


def iris_landmarks(rig: FaceRig) -> np.ndarray:
    """MediaPipe's 10 iris landmarks [10, 3] (468-472 right eye, 473-477 left): centre, +x, +y, -x, -y."""
    points = []
    angle = np.arcsin(IRIS_RADIUS / EYEBALL_RADIUS)
    offsets = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)]
    for centre in eyeball_centres(rig):
        for ox, oy in offsets:
            direction = np.array([ox * np.sin(angle), oy * np.sin(angle), np.cos(angle) if ox or oy else 1.0])
            points.append(centre + EYEBALL_RADIUS * direction / np.linalg.norm(direction))
    return np.array(points)


def head_parts(identity: Identity, rig: FaceRig) -> list[MeshPart]:
    """Every part of the head except the face mesh, in rest pose."""
    shape = identity.shape
    scale = np.array([shape.width, shape.height, shape.depth])
    parts = [
        _part(Material.EYE, ellipsoid(centre, np.full(3, EYEBALL_RADIUS), rows=18, columns=24))
        for centre in eyeball_centres(rig)
    ]
    mouth = rig.rest[list(INNER_LIPS)]
    mouth_centre = mouth.mean(axis=0)
    cavity_centre = mouth_centre - np.array([0.0, 0.2, 1.6])
    cavity = ellipsoid(cavity_centre, np.array([2.3, 1.9, 1.6]), rows=14, columns=20, keep=lambda d: d[:, 2] < 0.5)
    cavity = (cavity[0], -cavity[1], cavity[2], cavity[3])  # seen from inside: normals point inwards
    parts.append(_part(Material.MOUTH, cavity, jaw=np.clip(0.5 - cavity[2][:, 1] * 1.5, 0.0, 1.0)))
    parts.append(_part(Material.TEETH, _teeth(mouth_centre, upper=True), jaw=0.0))
    parts.append(_part(Material.TEETH, _teeth(mouth_centre, upper=False), jaw=1.0))
    skull_centre = np.array([0.0, 1.0, -3.0]) * scale
    skull_radii = np.array([7.9, 9.6, 9.8]) * scale
    scalp, scalp_jaw = _scalp(rig, skull_centre, skull_radii)
    parts.append(_part(Material.SKIN, scalp, jaw=scalp_jaw))
    if not identity.bald:
        parts.append(_part(Material.HAIR, _hair(identity, skull_centre, skull_radii)))
        if identity.hair_length > 0.5:
            parts.append(_part(Material.HAIR, _long_hair(identity, skull_centre, skull_radii)))
    for side in (-1.0, 1.0):
        ear_centre = np.array([7.55 * side * shape.width, 0.4, -3.0 * shape.depth])
        parts.append(_part(Material.SKIN, ellipsoid(ear_centre, np.array([0.9, 2.8, 1.7]), rows=10, columns=14)))
    parts.append(_part(Material.SKIN, _neck(scale)))
    torso_centre = np.array([0.0, -21.5, -3.5])
    parts.append(_part(Material.CLOTHING, ellipsoid(torso_centre, np.array([18.0, 7.0, 9.0]), rows=16, columns=32)))
    return parts


def _scalp(rig: FaceRig, centre: np.ndarray, radii: np.ndarray) -> tuple[tuple, np.ndarray]:
    """The back of the head, lofted from the face mesh's rim so the head is closed (no seam, no gaps).

    Rings go from the rim to the skull ellipsoid's equator (bulging outward on the way), then around the
    back of the ellipsoid to its rear pole. The first ring follows the jaw exactly like the rim vertices.
    """
    loop = boundary_loop()
    rim = rig.rest[loop]  # [K, 3]
    phi = np.arctan2((rim[:, 1] - centre[1]) / radii[1], rim[:, 0] / radii[0])
    around = np.stack([np.cos(phi), np.sin(phi), np.zeros_like(phi)], axis=1)  # [K, 3]
    equator = centre + around * radii
    rings = [rim]
    for t in (0.25, 0.5, 0.75):
        rings.append((1 - t) * rim + t * equator + 3.0 * t * (1 - t) * around)
    for theta in np.linspace(np.pi / 2, np.pi / 16, 8):
        rings.append(
            centre
            + np.stack(
                [np.sin(theta) * around[:, 0], np.sin(theta) * around[:, 1], -np.cos(theta) * np.ones_like(phi)], axis=1
            )
            * radii
        )
    grid = np.stack(rings)  # [rings, K, 3]
    count, width = grid.shape[:2]
    vertices = np.concatenate([grid.reshape(-1, 3), (centre - np.array([0.0, 0.0, radii[2]]))[None]])
    triangles = _grid_triangles(count, width, wrap=True)
    pole = len(vertices) - 1
    last = (count - 1) * width + np.arange(width)
    triangles = np.concatenate([triangles, np.stack([last, np.full(width, pole), np.roll(last, -1)], axis=1)])
    normals = (vertices - centre) / radii**2
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    jaw = np.zeros(len(vertices))
    jaw[:width] = rig.jaw_weights[loop]
    jaw[width : 2 * width] = 0.5 * rig.jaw_weights[loop]
    return (vertices, normals, vertices / 10.0, triangles), jaw


def _teeth(mouth_centre: np.ndarray, upper: bool) -> tuple:
    """A curved strip of teeth just behind the lips; local x counts teeth for the gaps between them."""
    columns, rows = 24, 3
    half_width = 1.7
    x = np.linspace(-half_width, half_width, columns)
    top, bottom = (0.45, -0.3) if upper else (-0.25, -0.95)
    y = mouth_centre[1] + np.linspace(top, bottom, rows)
    xx, yy = np.meshgrid(x, y, indexing="ij")  # [columns, rows]
    back = 0.6 + (0.0 if upper else 0.12)
    zz = mouth_centre[2] - back - 1.0 * (xx / half_width) ** 2  # the arch recedes into the dark at the sides
    vertices = np.stack([xx, yy, zz], axis=-1).transpose(1, 0, 2).reshape(-1, 3)
    slope = 2.0 * xx / half_width**2
    normals = np.stack([slope, np.zeros_like(xx), np.ones_like(xx)], axis=-1).transpose(1, 0, 2).reshape(-1, 3)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    local = np.stack([xx / 0.45, (yy - mouth_centre[1]), np.zeros_like(xx)], axis=-1).transpose(1, 0, 2).reshape(-1, 3)
    return vertices, normals, local, _grid_triangles(rows, columns, wrap=False)


def _hair(identity: Identity, centre: np.ndarray, radii: np.ndarray) -> tuple:
    """A hair layer over the skull, cut at a hairline that leaves the face and ears free."""
    volume = identity.hair_volume
    hair_radii = radii + 1.0 + np.array([volume, 1.1 * volume, volume])
    hairline = identity.hairline
    length = identity.hair_length

    def keep(d: np.ndarray) -> np.ndarray:
        front = d[:, 2]
        # In front the hair stops at the hairline (lower = more forehead covered); over the ears it stays above
        # them; behind, it comes down towards the neck, further for longer hair.
        front_limit = 0.68 - 0.06 * hairline
        side_limit = 0.3 - 0.05 * hairline
        back_limit = -0.15 - 0.6 * length
        limit = np.where(front > 0.3, front_limit, np.where(front > -0.35, side_limit, back_limit))
        return d[:, 1] > limit

    return ellipsoid(centre, hair_radii, rows=30, columns=40, keep=keep)


def _long_hair(identity: Identity, centre: np.ndarray, radii: np.ndarray) -> tuple:
    """Hair falling behind the shoulders line: an open elliptic tube below the hair layer, behind the face."""
    volume = identity.hair_volume
    rows, columns = 6, 28
    angle = np.linspace(np.pi * 0.42, np.pi * 1.58, columns)  # the back half, a little around the sides
    bottom = centre[1] - radii[1] * 0.2 - 14.0 * identity.hair_length
    y = np.linspace(centre[1], bottom, rows)
    aa, yy = np.meshgrid(angle, y, indexing="ij")
    flare = 1.0 + 0.25 * (centre[1] - yy) / max(centre[1] - bottom, 1e-6)
    rx, rz = (radii[0] + 1.0 + volume) * flare, (radii[2] + 1.0 + volume) * flare
    xx = centre[0] + rx * np.sin(aa)
    zz = centre[2] + rz * np.cos(aa)
    vertices = np.stack([xx, yy, zz], axis=-1).transpose(1, 0, 2).reshape(-1, 3)
    normals = np.stack([np.sin(aa), np.zeros_like(aa), np.cos(aa)], axis=-1).transpose(1, 0, 2).reshape(-1, 3)
    local = np.stack([np.sin(aa), yy / 10.0, np.cos(aa)], axis=-1).transpose(1, 0, 2).reshape(-1, 3)
    return vertices, normals, local, _grid_triangles(rows, columns, wrap=False)


def _neck(scale: np.ndarray) -> tuple:
    rows, columns = 5, 28
    angle = np.linspace(0.0, 2 * np.pi, columns, endpoint=False)
    # Starts below the mouth cavity and behind it, so it never shows through an open mouth.
    y = np.linspace(-7.0, -19.0, rows)
    aa, yy = np.meshgrid(angle, y, indexing="ij")
    rx, rz = 4.9 * scale[0], 5.0 * scale[2]
    xx = rx * np.sin(aa)
    zz = -3.8 * scale[2] + rz * np.cos(aa)
    vertices = np.stack([xx, yy, zz], axis=-1).transpose(1, 0, 2).reshape(-1, 3)
    normals = np.stack([np.sin(aa), np.zeros_like(aa), np.cos(aa)], axis=-1).transpose(1, 0, 2).reshape(-1, 3)
    return vertices, normals, vertices / 10.0, _grid_triangles(rows, columns, wrap=True)
