"""Alignment: a similarity crop to R×R whose framing agrees with the camera label by construction.

The template is not a fixed set of 2-D points: it is the canonical head (in the
model's world, nose tip on the pivot) projected through the face's own EG3D
camera. For a frontal face that is the frontal template of DESIGN §4; for a
turned or tilted head it is the same head seen from the labelled camera. A
weighted least-squares similarity (Umeyama) maps the detected landmarks onto it,
using MediaPipe's rigid Procrustes landmarks so that expression (an open jaw)
does not move the crop. So the nose lands at the centre, the face scale is fixed,
and rendering the label's camera frames the head the way the crop does.

Coordinates are continuous with (0, 0) at the top-left corner of the top-left
pixel; a transform maps source-image coordinates to crop coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from export3d_cli.face.canonical_face import canonical_face
from export3d_cli.face.head_pose import project_to_crop, world_landmarks


@dataclass(frozen=True)
class SimilarityTransform:
    """crop = matrix @ [x, y, 1]; matrix [2, 3] = [s·R | t] with a rotation R and scale s > 0."""

    matrix: np.ndarray

    @classmethod
    def from_params(cls, params: np.ndarray) -> SimilarityTransform:
        """From [log scale, angle (radians), tx, ty] — a chart in which averaging and smoothing make sense."""
        log_scale, angle, tx, ty = (float(v) for v in params)
        scale = math.exp(log_scale)
        cos, sin = scale * math.cos(angle), scale * math.sin(angle)
        return cls(np.array([[cos, -sin, tx], [sin, cos, ty]]))

    def params(self) -> np.ndarray:
        """[log scale, angle, tx, ty] (inverse of ``from_params``)."""
        a, b = self.matrix[0, 0], self.matrix[1, 0]
        return np.array([math.log(math.hypot(a, b)), math.atan2(b, a), self.matrix[0, 2], self.matrix[1, 2]])

    @property
    def scale(self) -> float:
        """Crop pixels per source pixel."""
        return math.hypot(self.matrix[0, 0], self.matrix[1, 0])

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points [N, 2] from the source image to the crop."""
        points = np.asarray(points, dtype=np.float64)[:, :2]
        return points @ self.matrix[:, :2].T + self.matrix[:, 2]

    def inverse(self) -> SimilarityTransform:
        linear_inverse = np.linalg.inv(self.matrix[:, :2])
        return SimilarityTransform(np.concatenate([linear_inverse, -linear_inverse @ self.matrix[:, 2:]], axis=1))

    def opencv_matrix(self) -> np.ndarray:
        """The same map in OpenCV's pixel-index coordinates (pixel centres at integers) [2, 3]."""
        linear = self.matrix[:, :2]
        offset = self.matrix[:, 2] + 0.5 * linear.sum(axis=1) - 0.5
        return np.concatenate([linear, offset[:, None]], axis=1)


def estimate_similarity(
    source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None
) -> SimilarityTransform:
    """Weighted least-squares similarity mapping ``source`` onto ``target`` (Umeyama 1991, no reflection).

    Shapes: source [N, 2], target [N, 2], weights [N] (N >= 2, not all points equal).
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    w = np.ones(len(source)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mean_source = w @ source
    mean_target = w @ target
    centred_source = source - mean_source
    centred_target = target - mean_target
    covariance = (centred_target * w[:, None]).T @ centred_source  # [2, 2]
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ sign @ vt
    variance = float(w @ (centred_source**2).sum(axis=1))
    if variance <= 0:
        raise ValueError("cannot fit a similarity to coincident points")
    scale = float(np.trace(np.diag(singular) @ sign)) / variance
    translation = mean_target - scale * rotation @ mean_source
    return SimilarityTransform(np.concatenate([scale * rotation, translation[:, None]], axis=1))


def alignment_template(label: np.ndarray, resolution: int) -> np.ndarray:
    """Where the canonical landmarks [468, 2] land in an R×R crop seen through camera ``label`` [25]."""
    return project_to_crop(world_landmarks(), label, resolution)


def alignment_transform(landmarks: np.ndarray, label: np.ndarray, resolution: int) -> SimilarityTransform:
    """Similarity from the image to the crop for a face with ``landmarks`` [>=468, 2+] and camera ``label``."""
    face = canonical_face()
    indices = face.procrustes_indices
    template = alignment_template(label, resolution)
    return estimate_similarity(landmarks[indices, :2], template[indices], face.procrustes_weights)


def warp_to_crop(image: np.ndarray, transform: SimilarityTransform, resolution: int) -> np.ndarray:
    """Resample ``image`` [H, W, 3] uint8 into the R×R crop [R, R, 3].

    Large reductions are first area-averaged down to the crop's scale, so a face
    that is 2,000 pixels wide in a photo does not alias into the crop.
    """
    import cv2

    height, width = image.shape[:2]
    matrix = transform.matrix.copy()
    if transform.scale < 0.5:
        new_width = max(1, round(width * transform.scale))
        new_height = max(1, round(height * transform.scale))
        image = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
        matrix[:, 0] *= width / new_width
        matrix[:, 1] *= height / new_height
    opencv = SimilarityTransform(matrix).opencv_matrix()
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        opencv,
        (resolution, resolution),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def feather_mask(resolution: int, feather: float = 0.08) -> np.ndarray:
    """Crop-space blending weights [R, R] float32: 1 inside, ramping to 0 over ``feather``·R at the edges."""
    centres = np.arange(resolution, dtype=np.float32) + 0.5
    distance = np.minimum(centres, resolution - centres)  # to the nearest edge, per axis
    width = max(feather * resolution, 1.0)
    ramp = np.clip(distance / width, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)  # smoothstep: no visible seam at the ramp's ends
    return np.outer(ramp, ramp)


def paste_back(
    crop: np.ndarray, image: np.ndarray, transform: SimilarityTransform, mask: np.ndarray | None = None
) -> np.ndarray:
    """Composite a crop [R, R, 3] back into the image [H, W, 3] it was cut from (uint8 in and out)."""
    import cv2

    resolution = crop.shape[0]
    height, width = image.shape[:2]
    mask = feather_mask(resolution) if mask is None else mask.astype(np.float32)
    inverse = transform.inverse().opencv_matrix()
    warped = cv2.warpAffine(crop, inverse, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(mask, inverse, (width, height), flags=cv2.INTER_LINEAR, borderValue=0.0)[..., None]
    blended = weight * warped.astype(np.float32) + (1.0 - weight) * image.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
