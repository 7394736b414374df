"""CSIM: cosine similarity of identity embeddings — is it the same person?

The paper uses ArcFace embeddings; no ArcFace weights can be installed here, so
CSIM is measured with **dlib's face-recognition ResNet** (128-d embeddings,
trained with a metric loss; dlib calls a Euclidean distance < 0.6 the same
person). Always report it as "CSIM (dlib ResNet)".

dlib's embeddings all lie in a narrow cone: their raw cosine is 0.80–0.83
between different people and 0.95–0.97 between photos of one person (the
photos in ``tests/data/real_faces``), so a raw cosine would squeeze the whole
scale into 0.15. ArcFace's embeddings are spread over the sphere (strangers
near 0). CSIM therefore takes the cosine **after subtracting the mean embedding
of a face population** (``identity_reference.json``: 20 faces from photos used
in no test; ``tools/make_identity_reference.py``). On the test photos
that gives 0.83–0.91 for one person and 0.11–0.42 for different people. The
values are still not comparable with the paper's ArcFace CSIM, only with each
other.

The face chip is aligned by dlib's own 5-point predictor, started from the box
of MediaPipe's landmarks (``dlib_models.face_box``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from export3d_cli.metrics.dlib_models import face_box, load_identity_network

EMBEDDING_DIM = 128
IDENTITY_REFERENCE = Path(__file__).with_name("identity_reference.json")


@functools.cache
def population_mean() -> np.ndarray:
    """The mean embedding [128] that CSIM centres on."""
    mean = np.array(json.loads(IDENTITY_REFERENCE.read_text(encoding="utf-8"))["mean"], dtype=np.float64)
    if mean.shape != (EMBEDDING_DIM,):
        raise ValueError(f"{IDENTITY_REFERENCE}: expected {EMBEDDING_DIM} values, got {mean.shape}")
    return mean


def identity_embedding(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib ResNet embedding [128] of the face at MediaPipe ``landmarks`` [478, 2+] in ``image`` (uint8 RGB)."""
    aligner, network = load_identity_network()
    image = np.ascontiguousarray(image)
    shape = aligner(image, face_box(landmarks))
    return np.array(network.compute_face_descriptor(image, shape), dtype=np.float64)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two vectors [D]."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def identity_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """CSIM of two dlib embeddings [128]: their cosine about the population mean (see the module docstring)."""
    mean = population_mean()
    return cosine_similarity(np.asarray(a) - mean, np.asarray(b) - mean)
