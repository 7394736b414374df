"""Face analysis with MediaPipe Face Landmarker (DESIGN §4). The model bundle ships in ``weights/``."""

from export3d_cli.face.landmarker_model import FACE_LANDMARKER_SHA256, face_landmarker_path, verify_model_file

__all__ = ["FACE_LANDMARKER_SHA256", "face_landmarker_path", "verify_model_file"]
