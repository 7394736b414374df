"""AKD (average keypoint distance): do the facial features sit where the reference's do?

Mean Euclidean distance between corresponding 68-point facial landmarks of a
generated frame and its reference (ground-truth) frame, in pixels of the
reference face's 256² aligned crop (the crop the model would see: the same
similarity transform is applied to both point sets, so a face drawn in the
wrong place or size counts as error). Landmarks come from **dlib's 68-point
shape predictor** (iBUG 300-W layout), a network independent of the MediaPipe
landmarks that drive the model. The paper uses the FAN detector
(face-alignment) on 256² frames; same layout and units, another detector.
"""

from __future__ import annotations

import numpy as np

from export3d_cli.face.alignment import SimilarityTransform
from export3d_cli.metrics.dlib_models import face_box, load_keypoint_predictor

KEYPOINT_COUNT = 68


def facial_keypoints(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib's 68 keypoints [68, 2] (image pixels) for the face at MediaPipe ``landmarks`` [478, 2+]."""
    shape = load_keypoint_predictor()(np.ascontiguousarray(image), face_box(landmarks))
    return np.array([[point.x, point.y] for point in shape.parts()], dtype=np.float64)


def keypoint_distance(generated: np.ndarray, reference: np.ndarray, crop_transform: SimilarityTransform) -> float:
    """Mean distance of keypoints [K, 2] after mapping both into the reference's crop (crop pixels)."""
    generated, reference = np.asarray(generated, np.float64), np.asarray(reference, np.float64)
    if generated.shape != reference.shape:
        raise ValueError(f"keypoint shapes differ: {generated.shape} vs {reference.shape}")
    return float(np.linalg.norm(crop_transform.apply(generated) - crop_transform.apply(reference), axis=1).mean())
