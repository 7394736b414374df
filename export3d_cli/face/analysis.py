"""Analyse one face in a still image: β, head pose, EG3D camera p and the aligned R×R crop S.

This is what the model sees of a source photo (DESIGN §2): the crop S, the
expression β ∈ R^52, the camera label p ∈ R^25, and the image → crop transform
needed to paste a result back into the photo.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export3d_cli.errors import InputError
from export3d_cli.face.alignment import SimilarityTransform, alignment_transform, warp_to_crop
from export3d_cli.face.head_pose import HeadPose
from export3d_cli.face.landmarker import FaceLandmarker, FaceObservation

DEFAULT_RESOLUTION = 256


@dataclass(frozen=True)
class FaceAnalysis:
    """One analysed face.

    Shapes: expression [52] float32, camera [25] float32, landmarks [478, 3] (image
    pixels), crop [R, R, 3] uint8; ``transform`` maps image coordinates to the crop.
    """

    expression: np.ndarray
    pose: HeadPose
    camera: np.ndarray
    landmarks: np.ndarray
    transform: SimilarityTransform
    crop: np.ndarray
    faces_found: int

    @property
    def crop_landmarks(self) -> np.ndarray:
        """Landmarks in crop pixel coordinates [478, 2]."""
        return self.transform.apply(self.landmarks).astype(np.float32)


def select_face(faces: list[FaceObservation], face_index: int, name: str) -> FaceObservation:
    """The ``face_index``-th largest face, or an InputError naming ``name``."""
    if not faces:
        raise InputError(f"{name}: no face found")
    if face_index < 0:
        raise InputError(f"{name}: --face-index must be 0 or more, got {face_index}")
    if face_index >= len(faces):
        found = "1 face" if len(faces) == 1 else f"{len(faces)} faces"
        raise InputError(f"{name}: --face-index {face_index} but only {found} found (0 is the largest face)")
    return faces[face_index]


def analyze_observation(image: np.ndarray, face: FaceObservation, resolution: int, faces_found: int) -> FaceAnalysis:
    """Camera, alignment and crop for one detected face in ``image`` [H, W, 3]."""
    pose = HeadPose.from_landmarks(face.landmarks)
    camera = pose.label()
    transform = alignment_transform(face.landmarks, camera, resolution)
    return FaceAnalysis(
        expression=face.blendshapes.astype(np.float32),
        pose=pose,
        camera=camera,
        landmarks=face.landmarks,
        transform=transform,
        crop=warp_to_crop(image, transform, resolution),
        faces_found=faces_found,
    )


def analyze_image(
    image: np.ndarray | str | Path,
    *,
    resolution: int = DEFAULT_RESOLUTION,
    face_index: int = 0,
    landmarker: FaceLandmarker | None = None,
    name: str | None = None,
) -> FaceAnalysis:
    """Analyse the ``face_index``-th largest face of an image (array or path); errors name the file."""
    from export3d_cli.media.image_io import load_image

    if isinstance(image, (str, Path)):
        name = name or str(image)
        image = load_image(image)
    name = name or "image"
    if landmarker is None:
        with FaceLandmarker("image") as own_landmarker:
            faces = own_landmarker.detect(image)
    else:
        faces = landmarker.detect(image)
    face = select_face(faces, face_index, name)
    return analyze_observation(image, face, resolution, len(faces))
