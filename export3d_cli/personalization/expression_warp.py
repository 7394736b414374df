"""Give a photographed face another expression: the synthetic rig's motion, applied to the photo as a 2-D warp.

The rig (``synth.face_rig``) poses MediaPipe's canonical face mesh; the face pipeline finds the same 468 vertices
in the photo. So an expression is a displacement of each vertex: the rig's motion of the canonical head
(posed − rest), projected through the photo's camera and mapped onto the photo's own landmarks by a least-squares
2-D affine map (the photo's face is not the canonical face's size or shape). The photo is then warped piecewise
affinely from its landmarks to the moved ones; a ring of fixed anchors around the face keeps hair and background
in place and lets the chin drag the skin below it.

Where the lips part wider than in the photo, the mouth opening shows what the synthetic heads' mouths show
(``synth.head_parts``): a dark cavity, a tongue, and two strips of teeth behind the lips — the upper ones fixed to
the skull, the lower ones carried by the jaw — so the face pipeline reads an open mouth, not a dark slit. Closing
eyes needs nothing extra: the eye-opening triangles are squashed and the lid skin stretched over them.
"""

from __future__ import annotations

import numpy as np

from export3d_cli.face.head_pose import canonical_to_world, project_to_crop
from export3d_cli.synth.face_rig import (
    CONTROL_INDEX,
    INNER_LIPS,
    LEFT_EYE,
    LEFT_EYE_LOWER,
    LEFT_EYE_UPPER,
    LOWER_INNER_LIPS,
    RIGHT_EYE,
    RIGHT_EYE_LOWER,
    RIGHT_EYE_UPPER,
    UPPER_INNER_LIPS,
    FaceRig,
    boundary_loop,
    move_with_jaw,
)
from export3d_cli.synth.identity import FaceShape
from export3d_cli.synth.rasterizer import rasterize

MESH_VERTICES = 468
ANCHOR_SCALE = 1.6  # the fixed outer ring, as a multiple of the face rim's distance from the face centre
PROJECTION_RESOLUTION = 512  # any value: only the affine fit to the photo's landmarks uses the projection's units
CAVITY = np.array([0.32, 0.08, 0.08]) * 0.55
TONGUE = np.array([0.6, 0.26, 0.26]) * 0.7
TOOTH = np.array([0.93, 0.91, 0.84])
TOOTH_GAP = np.array([0.55, 0.5, 0.45])
TOOTH_WIDTH_CM = 0.45
BLINK_CLOSURE = 0.97  # as the rig: the upper lid stops just short of the lower one
EYES = (
    ("right", "blink_right", RIGHT_EYE, RIGHT_EYE_LOWER, RIGHT_EYE_UPPER),
    ("left", "blink_left", LEFT_EYE, LEFT_EYE_LOWER, LEFT_EYE_UPPER),
)
OPEN_PHOTO_MOUTH = 0.04  # lip-opening area / mouth width²: above this the photo's own mouth interior is used
HEAD_CENTRE_DEPTH = 0.6  # the head turns about a point this many face widths behind the face's mean depth
DEPTH_OFFSET = 1e4  # pixels: far enough that depth-corrected barycentrics stay affine


def _mouth_triangles(triangles: np.ndarray) -> np.ndarray:
    ring = set(INNER_LIPS)
    return np.array([i for i, tri in enumerate(triangles) if all(int(v) in ring for v in tri)], dtype=np.int64)


def _teeth_quads(mouth_centre: np.ndarray, jaw: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two teeth strips of ``synth.head_parts`` as flat quads: (corners [4, 3] canonical cm, x extent [2])."""
    half_width = 1.7
    quads = []
    for top, bottom, follows_jaw in ((0.45, -0.3, False), (-0.25, -0.95, True)):
        corners = np.array(
            [[-half_width, top, 0.0], [half_width, top, 0.0], [half_width, bottom, 0.0], [-half_width, bottom, 0.0]]
        )
        corners[:, :2] += mouth_centre[:2]
        corners[:, 2] = mouth_centre[2] - 0.6
        if follows_jaw:
            corners = move_with_jaw(corners, jaw, 1.0)
        quads.append((corners, np.array([-half_width, half_width])))
    return quads


class ExpressionWarp:
    """Warps one photo to rig expressions. Build once per photo (the affine fit and the mesh), call per expression.

    ``landmarks`` [478, 2+] are the face pipeline's landmarks in photo pixels; ``camera`` [25] its camera label.
    """

    def __init__(self, photo: np.ndarray, landmarks: np.ndarray, camera: np.ndarray) -> None:
        from export3d_cli.face.canonical_face import canonical_face

        self.photo = np.asarray(photo)
        if self.photo.ndim != 3 or self.photo.shape[2] != 3 or self.photo.dtype != np.uint8:
            raise ValueError(f"photo must be uint8 [H, W, 3], got {self.photo.dtype} {self.photo.shape}")
        self.face = np.asarray(landmarks, dtype=np.float64)[:MESH_VERTICES, :2]
        self.depth = np.asarray(landmarks, dtype=np.float64)[:MESH_VERTICES, 2]  # MediaPipe: pixels, larger = further
        self.camera = np.asarray(camera, dtype=np.float64)
        self.rig = FaceRig(FaceShape.neutral())
        self.rest = self.rig.pose(np.zeros(len(CONTROL_INDEX)))
        triangles = canonical_face().triangles.astype(np.int64)
        self.mouth_triangles = _mouth_triangles(triangles)

        # Canonical-projection -> photo pixels, least squares over all 468 vertices.
        projected = self._project(self.rest)
        design = np.concatenate([projected, np.ones((len(projected), 1))], axis=1)
        self.affine = np.linalg.lstsq(design, self.face, rcond=None)[0]  # [3, 2]

        rim = boundary_loop()
        centre = self.face.mean(axis=0)
        anchors = centre + ANCHOR_SCALE * (self.face[rim] - centre)
        self.points = np.concatenate([self.face, anchors])  # [468 + 36, 2]
        band = []
        count = len(rim)
        for i in range(count):
            a, b = rim[i], rim[(i + 1) % count]
            oa, ob = MESH_VERTICES + i, MESH_VERTICES + (i + 1) % count
            band += [(a, b, ob), (a, ob, oa)]
        self.triangles = np.concatenate([triangles, np.array(band, dtype=np.int64)])
        lo = np.floor(anchors.min(axis=0)).astype(int) - 2
        hi = np.ceil(anchors.max(axis=0)).astype(int) + 2
        height, width = self.photo.shape[:2]
        self.box = (max(lo[0], 0), max(lo[1], 0), min(hi[0], width), min(hi[1], height))  # x0, y0, x1, y1
        self.brightness = self._skin_brightness()

    def _project(self, canonical: np.ndarray) -> np.ndarray:
        return project_to_crop(canonical_to_world(canonical), self.camera, PROJECTION_RESOLUTION)

    def _to_photo(self, canonical: np.ndarray) -> np.ndarray:
        projected = self._project(canonical)
        return np.concatenate([projected, np.ones((len(projected), 1))], axis=1) @ self.affine

    def _skin_brightness(self) -> float:
        """The photo's exposure at the cheeks, so painted teeth are not brighter than the skin's lighting allows."""
        x = np.clip(self.face[:, 0].round().astype(int), 0, self.photo.shape[1] - 1)
        y = np.clip(self.face[:, 1].round().astype(int), 0, self.photo.shape[0] - 1)
        luminance = self.photo[y, x].astype(np.float64).mean(axis=1) / 255.0
        return float(np.clip(np.median(luminance) / 0.55, 0.5, 1.2))

    def moved_landmarks(self, controls: np.ndarray) -> np.ndarray:
        """Photo-pixel positions [468, 2] of the mesh vertices under rig ``controls`` [8].

        Blinks are measured on the photo, not taken from the rig: the canonical face's eye opening is not this
        person's, and a lid that stops short of the lower lid does not read as closed.
        """
        controls = np.asarray(controls, dtype=np.float64)
        without_blinks = controls.copy()
        for _, control, *_ in EYES:
            without_blinks[CONTROL_INDEX[control]] = 0.0
        displacement = self._project(self.rig.pose(without_blinks)) - self._project(self.rest)
        moved = self.face + displacement @ self.affine[:2]
        for eye, control, ring, lower, upper in EYES:
            amount = float(controls[CONTROL_INDEX[control]])
            if amount > 0:
                moved += amount * self._blink(eye, ring, lower, upper)
        return moved

    def _blink(self, eye: str, ring: tuple, lower: tuple, upper: tuple) -> np.ndarray:
        """Displacement [468, 2] that closes one eye of the photo, in the eye's own frame (head roll included)."""
        corners = self.face[[ring[0], ring[8]]]
        axis = corners[1] - corners[0]
        axis /= np.linalg.norm(axis)
        normal = np.array([-axis[1], axis[0]])
        if normal[1] < 0:  # "down" in the eye's frame points down the image
            normal = -normal
        origin = corners[0]

        def curve(indices: tuple) -> tuple[np.ndarray, np.ndarray]:
            points = self.face[[ring[0], *indices, ring[8]]] - origin
            along, across = points @ axis, points @ normal
            order = np.argsort(along)
            return along[order], across[order]

        relative = self.face - origin
        along = relative @ axis
        gap = np.interp(along, *curve(lower)) - np.interp(along, *curve(upper))  # lower lid below upper: > 0
        weights = self.rig.eyes[eye].weights  # which vertices follow the upper lid, from the rig
        return (BLINK_CLOSURE * np.clip(gap, 0.0, None) * weights)[:, None] * normal

    def __call__(self, controls: np.ndarray, yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
        """The photo with the rig's expression ``controls`` [8], the face turned by ``yaw`` / ``pitch`` degrees:
        uint8 [H, W, 3], pixels outside the face ring kept."""
        controls = np.clip(np.asarray(controls, dtype=np.float64), 0.0, 1.0)
        x0, y0, x1, y1 = self.box
        face, depth = self._turned(self.moved_landmarks(controls), yaw, pitch)
        moved = np.concatenate([face, self.points[MESH_VERTICES:]])
        if yaw == 0.0 and pitch == 0.0:
            depth = np.ones(len(moved))  # a plain 2-D warp: exactly affine per triangle
        else:
            # The anchors lie behind the face; a large constant keeps the depth-corrected barycentrics ~affine.
            depth = np.concatenate([depth, np.full(len(moved) - MESH_VERTICES, depth.max() + 1.0)]) + DEPTH_OFFSET
        offset = np.array([x0, y0], dtype=np.float64)
        # Pixel centres are at +0.5: rasterise in continuous coordinates relative to the box.
        fragments = rasterize(moved - offset, depth, self.triangles, y1 - y0, x1 - x0)
        covered = fragments.triangle >= 0
        corners = self.points[self.triangles[np.maximum(fragments.triangle, 0)]]  # [h, w, 3, 2]
        source = np.einsum("hwk,hwkc->hwc", fragments.barycentric, corners) - 0.5  # continuous -> index space
        result = self.photo.copy()
        region = result[y0:y1, x0:x1]
        region[covered] = _sample(self.photo, source)[covered]
        self._paint_mouth(region, fragments, covered, controls, offset, moved)
        return result

    def _turned(self, face: np.ndarray, yaw: float, pitch: float) -> tuple[np.ndarray, np.ndarray]:
        """Rotate the face's landmarks [468, 2] (with the photo's depths) about a point inside the head; a nearby
        camera, as far as the face is concerned. Returns positions [468, 2] and depths [468] (larger = further)."""
        depth = self.depth.copy()
        if yaw == 0.0 and pitch == 0.0:
            return face, depth
        points = np.concatenate([face, depth[:, None]], axis=1)
        width = float(np.ptp(self.face[:, 0]))
        centre = np.array([*face.mean(axis=0), depth.mean() + HEAD_CENTRE_DEPTH * width])
        a, b = np.radians(yaw), np.radians(pitch)
        turn = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
        nod = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
        rotated = (points - centre) @ (nod @ turn).T + centre
        return rotated[:, :2], rotated[:, 2]

    def _paint_mouth(self, region, fragments, covered, controls, offset, moved) -> None:
        """Fill the lip opening as a mouth opens.

        The photo's own mouth interior (teeth, if it shows them) is split at the middle of the opening: the upper
        half moves with the upper lip, the lower half with the lower lip, and what opens between them is the
        synthetic heads' cavity and tongue. A photo with closed lips has no interior to move; it also gets the
        synthetic heads' teeth, the upper strip fixed to the skull and the lower one carried by the jaw.
        """
        in_mouth = covered & np.isin(fragments.triangle, self.mouth_triangles)
        if not in_mouth.any():
            return
        lips = list(INNER_LIPS)
        mouth_width = np.linalg.norm(self.face[61] - self.face[291])
        photo_area = _polygon_area(self.face[lips])
        if _polygon_area(moved[lips]) <= photo_area + 0.01 * mouth_width**2:
            return  # not opened wider than in the photo: the warped photo is right as it is
        photo_open = photo_area > OPEN_PHOTO_MOUTH * mouth_width**2
        height, width = region.shape[:2]
        yy, xx = np.mgrid[0:height, 0:width]
        centres = np.stack([xx, yy], axis=-1) + 0.5 + offset  # photo continuous coordinates
        colour = np.broadcast_to(CAVITY, (height, width, 3)).copy()
        lower_lip = moved[[14, 87, 317]].mean(axis=0)
        upper_lip = moved[[13, 82, 312]].mean(axis=0)
        depth = np.clip((centres[..., 1] - upper_lip[1]) / max(lower_lip[1] - upper_lip[1], 1e-6), 0.0, 1.0)
        tongue = depth > 0.62
        colour[tongue] = TONGUE * (0.7 + 0.3 * depth[tongue, None])
        if not photo_open:
            jaw = float(controls[CONTROL_INDEX["jaw_open"]])
            for corners, extent in _teeth_quads(self.rig.mouth_centre, jaw):
                inside, across = _inside_quad(centres, self._to_photo(corners))
                teeth_x = extent[0] + across * (extent[1] - extent[0])
                gap = np.abs(((teeth_x / TOOTH_WIDTH_CM + 0.5) % 1.0) - 0.5) < 0.06
                colour[inside] = np.where(gap[inside, None], TOOTH_GAP, TOOTH)
                colour[inside] *= (1.0 - 0.55 * np.abs(2 * across[inside] - 1) ** 2)[:, None]  # the arch recedes
        painted = np.clip(colour * self.brightness * 255.0, 0, 255)
        region[in_mouth] = painted[in_mouth].astype(np.uint8)
        if photo_open:
            self._move_photo_interior(region, in_mouth, centres, moved)

    def _move_photo_interior(self, region, in_mouth, centres, moved) -> None:
        opening = self.face[list(INNER_LIPS)]
        points = centres[in_mouth]  # [K, 2]
        for lip, upper_half in ((UPPER_INNER_LIPS, True), (LOWER_INNER_LIPS, False)):
            order = np.argsort(self.face[list(lip), 0])
            lip_x = moved[list(lip), 0][order]
            shift = (moved[list(lip)] - self.face[list(lip)])[order]  # [9, 2]
            source = points - np.stack([np.interp(points[:, 0], lip_x, shift[:, k]) for k in range(2)], axis=1)
            upper_y = np.interp(source[:, 0], *_sorted_curve(self.face[list(UPPER_INNER_LIPS)]))
            lower_y = np.interp(source[:, 0], *_sorted_curve(self.face[list(LOWER_INNER_LIPS)]))
            middle = 0.5 * (upper_y + lower_y)
            half = source[:, 1] <= middle if upper_half else source[:, 1] >= middle
            usable = half & inside_polygon(source, opening)
            if usable.any():
                rows, cols = np.nonzero(in_mouth)
                region[rows[usable], cols[usable]] = _sample(self.photo, source[usable][None] - 0.5)[0]


def _sorted_curve(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(points[:, 0])
    return points[order, 0], points[order, 1]


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd rule: which ``points`` [K, 2] lie inside the closed ``polygon`` [N, 2]."""
    inside = np.zeros(len(points), dtype=bool)
    x, y = points[:, 0], points[:, 1]
    for (ax, ay), (bx, by) in zip(polygon, np.roll(polygon, -1, axis=0), strict=True):
        crosses = (ay > y) != (by > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = ax + (y - ay) * (bx - ax) / (by - ay)
        inside ^= crosses & (x < at)
    return inside


def _polygon_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _inside_quad(points: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which ``points`` [H, W, 2] lie in the convex ``quad`` [4, 2] (any winding), and their fraction along edge 0→1."""
    signs = []
    for i in range(4):
        a, b = quad[i], quad[(i + 1) % 4]
        signs.append((b[0] - a[0]) * (points[..., 1] - a[1]) - (b[1] - a[1]) * (points[..., 0] - a[0]))
    signs = np.stack(signs)
    inside = np.all(signs >= 0, axis=0) | np.all(signs <= 0, axis=0)
    along = quad[1] - quad[0]
    across = ((points - quad[0]) @ along) / max(float(along @ along), 1e-9)
    return inside, np.clip(across, 0.0, 1.0)


def _sample(image: np.ndarray, coordinates: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``image`` uint8 [H, W, 3] at index-space ``coordinates`` [h, w, 2] (x, y), clamped at the
    border (as ``synth.head_renderer`` samples its textures). Returns uint8 [h, w, 3]."""
    import cv2

    x = np.ascontiguousarray(coordinates[..., 0], dtype=np.float32)
    y = np.ascontiguousarray(coordinates[..., 1], dtype=np.float32)
    return cv2.remap(image, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
