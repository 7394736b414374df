"""CSIM: cosine similarity of identity embeddings — is it the same person?

The paper uses ArcFace embeddings; no ArcFace weights can be installed here, so
CSIM is measured with **dlib's face-recognition ResNet** (128-d, trained with a
metric loss on ~3 million faces; dlib calls a Euclidean distance < 0.6 the same
person). Its embeddings are not unit length and its cosines run higher than
ArcFace's (two strangers often score 0.85+), so our CSIM values are not
comparable with the paper's table, only with each other. Always report it as
"CSIM (dlib ResNet)".

The face chip is aligned by dlib's own 5-point predictor, started from the box
of MediaPipe's landmarks (``dlib_models.face_box``).
"""

from __future__ import annotations

import numpy as np

from export3d_cli.metrics.dlib_models import face_box, load_identity_network

EMBEDDING_DIM = 128


def identity_embedding(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib ResNet embedding [128] of the face at MediaPipe ``landmarks`` [478, 2+] in ``image`` (uint8 RGB)."""
    aligner, network = load_identity_network()
    image = np.ascontiguousarray(image)
    shape = aligner(image, face_box(landmarks))
    return np.array(network.compute_face_descriptor(image, shape), dtype=np.float64)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two embeddings [D]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
