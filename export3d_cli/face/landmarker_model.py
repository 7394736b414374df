"""The bundled MediaPipe Face Landmarker model file, checked against its published checksum.

MediaPipe's wheel carries no model files and nothing here downloads one: the
bundle lies in ``weights/face_landmarker.task`` (provenance in
``weights/FACE_LANDMARKER.md``). A missing or altered file is a WeightsError
naming the file, never a crash inside MediaPipe.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from export3d_cli.errors import WeightsError

FACE_LANDMARKER_FILE = "face_landmarker.task"
FACE_LANDMARKER_SIZE = 3_758_596
FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"
BUNDLED_PATH = Path(__file__).resolve().parents[2] / "weights" / FACE_LANDMARKER_FILE


def verify_model_file(path: Path, size: int = FACE_LANDMARKER_SIZE, sha256: str = FACE_LANDMARKER_SHA256) -> Path:
    """Return ``path`` if it has the expected size and sha256, else raise WeightsError."""
    if not path.is_file():
        raise WeightsError(f"{path}: face model missing; reinstall export3d (it ships weights/{FACE_LANDMARKER_FILE})")
    actual_size = path.stat().st_size
    if actual_size != size:
        raise WeightsError(f"{path}: face model is {actual_size} bytes, expected {size}; the file is damaged")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise WeightsError(f"{path}: face model checksum {digest[:12]}… does not match {sha256[:12]}…; damaged")
    return path


@functools.cache
def face_landmarker_path() -> Path:
    """The verified bundled model (checked once per process)."""
    return verify_model_file(BUNDLED_PATH)
