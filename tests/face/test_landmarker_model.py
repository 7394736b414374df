"""The bundled Face Landmarker bundle is present, intact and complete; damage is a WeightsError."""

import shutil
import zipfile

import pytest

from export3d_cli.errors import WeightsError
from export3d_cli.face.landmarker_model import face_landmarker_path, verify_model_file


def test_bundled_model_verifies_and_has_all_members():
    path = face_landmarker_path()
    names = set(zipfile.ZipFile(path).namelist())
    assert names == {
        "face_detector.tflite",
        "face_landmarks_detector.tflite",
        "face_blendshapes.tflite",
        "geometry_pipeline_metadata_landmarks.binarypb",
    }


def test_damaged_copy_is_rejected(tmp_path):
    copy = tmp_path / "face_landmarker.task"
    shutil.copy(face_landmarker_path(), copy)
    data = bytearray(copy.read_bytes())
    data[1000] ^= 0xFF  # same size, one flipped byte
    copy.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum"):
        verify_model_file(copy)
    copy.write_bytes(bytes(data[:100]))
    with pytest.raises(WeightsError, match="bytes"):
        verify_model_file(copy)
    with pytest.raises(WeightsError, match="missing"):
        verify_model_file(tmp_path / "nope.task")
