"""What the judges see in one frame: found or not, β, head angles, landmarks, and (optionally) dlib's views.

The metrics judge each frame on its own: MediaPipe's image mode (a fresh
detection every frame, no tracking from earlier frames and no temporal
smoothing), so a frame's measurement does not depend on the frames around it and
a blurry frame cannot inherit a face from its neighbours. When several faces are
found, the largest is measured. dlib's identity embedding (CSIM) and 68
keypoints (AKD) are computed only when asked for: they need the ``eval`` extra
and the embedding is the slow part (~0.1 s a face on a CPU core).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from export3d_cli.face.alignment import SimilarityTransform, alignment_transform
from export3d_cli.face.head_pose import HeadPose
from export3d_cli.face.landmarker import FaceLandmarker
from export3d_cli.metrics.identity import identity_embedding
from export3d_cli.metrics.keypoints import facial_keypoints

AKD_CROP_RESOLUTION = 256  # AKD is reported in pixels of a 256² aligned crop (the paper's evaluation size)


@dataclass(frozen=True)
class FaceMeasurement:
    """One frame's face.

    Shapes: expression [52] (MediaPipe order), angles [3] (yaw, pitch, roll in degrees, as
    ``HeadPose.yaw_pitch_roll``), landmarks [478, 2] (image pixels), embedding [128] (dlib ResNet)
    and keypoints [68, 2] (dlib, image pixels) when measured. ``crop_transform`` maps the image to
    this face's 256² aligned crop.
    """

    expression: np.ndarray
    angles: np.ndarray
    landmarks: np.ndarray
    crop_transform: SimilarityTransform
    embedding: np.ndarray | None = None
    keypoints: np.ndarray | None = None


class FaceMeter:
    """Measures frames one by one (MediaPipe image mode, plus dlib when asked); close it, or use ``with``."""

    def __init__(self) -> None:
        self._landmarker = FaceLandmarker("image")

    def __enter__(self) -> FaceMeter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._landmarker.close()

    def measure(self, image: np.ndarray, *, identity: bool = False, keypoints: bool = False) -> FaceMeasurement | None:
        """The largest face in ``image`` (uint8 RGB [H, W, 3]), or None when no face is found."""
        faces = self._landmarker.detect(image)
        if not faces:
            return None
        face = faces[0]
        pose = HeadPose.from_landmarks(face.landmarks)
        landmarks = face.landmarks[:, :2].copy()
        return FaceMeasurement(
            expression=face.blendshapes.astype(np.float64),
            angles=np.array(pose.yaw_pitch_roll()),
            landmarks=landmarks,
            crop_transform=alignment_transform(face.landmarks, pose.label(), AKD_CROP_RESOLUTION),
            embedding=identity_embedding(image, landmarks) if identity else None,
            keypoints=facial_keypoints(image, landmarks) if keypoints else None,
        )
