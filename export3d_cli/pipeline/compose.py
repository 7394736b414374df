"""Output frames: the rendered crop, pasted back into the source photo, or source | driver | result.

Paste-back warps the rendered crop into the photo with the alignment's inverse
similarity and blends it through a feathered face-shaped mask (the convex hull
of the source's landmarks, enlarged, inside a feathered square), so the
generated background around the head does not show as a square patch.
"""

from __future__ import annotations

import numpy as np

from export3d_cli.face.alignment import SimilarityTransform, feather_mask, paste_back


def face_mask(crop_landmarks: np.ndarray, resolution: int, grow: float = 1.35, feather: float = 0.06) -> np.ndarray:
    """Blending weights [R, R] float32: the landmarks' convex hull grown about its centre, feathered."""
    import cv2

    points = np.asarray(crop_landmarks, np.float64)[:, :2]
    centre = points.mean(axis=0)
    grown = centre + (points - centre) * grow
    hull = cv2.convexHull(np.round(grown * 4).astype(np.int32))
    mask = np.zeros((resolution, resolution), np.float32)
    cv2.fillConvexPoly(mask, hull, 1.0, cv2.LINE_AA, shift=2)
    sigma = max(feather * resolution, 1.0)
    mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    return np.clip(mask, 0.0, 1.0) * feather_mask(resolution)


class PasteBack:
    """Composites rendered crops into one source photo at its full resolution."""

    def __init__(self, image: np.ndarray, transform: SimilarityTransform, crop_size: int, landmarks: np.ndarray):
        self.image = image
        self.transform = transform
        self.crop_size = crop_size
        self.mask = face_mask(landmarks, crop_size)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        import cv2

        if frame.shape[0] != self.crop_size:
            frame = cv2.resize(frame, (self.crop_size, self.crop_size), interpolation=cv2.INTER_CUBIC)
        return paste_back(frame, self.image, self.transform, self.mask)


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
    """Scale ``image`` to fit a size×size square, centred on black (for side-by-side panels)."""
    import cv2

    height, width = image.shape[:2]
    scale = size / max(height, width)
    resized = cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )
    panel = np.zeros((size, size, 3), np.uint8)
    top = (size - resized.shape[0]) // 2
    left = (size - resized.shape[1]) // 2
    panel[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
    return panel


def side_by_side(source: np.ndarray, driver: np.ndarray | None, result: np.ndarray) -> np.ndarray:
    """source | driver | result, each a square panel of the result's height (black when no driver frame)."""
    size = result.shape[0]
    driver_panel = fit_square(driver, size) if driver is not None else np.zeros_like(result)
    return np.concatenate([fit_square(source, size), driver_panel, result], axis=1)
