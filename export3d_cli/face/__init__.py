"""Face analysis with MediaPipe Face Landmarker (DESIGN §4). The model bundle ships in ``weights/``."""

from export3d_cli.face.analysis import FaceAnalysis, analyze_image
from export3d_cli.face.blendshapes import BLENDSHAPE_NAMES, EXPRESSION_DIM
from export3d_cli.face.head_pose import HeadPose, label_angles, look_at_pose
from export3d_cli.face.landmarker_model import FACE_LANDMARKER_SHA256, face_landmarker_path, verify_model_file
from export3d_cli.face.motion_file import Motion, load_motion, save_motion
from export3d_cli.face.video_analysis import Smoothing, VideoMotion, analyze_video

__all__ = [
    "BLENDSHAPE_NAMES",
    "EXPRESSION_DIM",
    "FACE_LANDMARKER_SHA256",
    "FaceAnalysis",
    "HeadPose",
    "Motion",
    "Smoothing",
    "VideoMotion",
    "analyze_image",
    "analyze_video",
    "face_landmarker_path",
    "label_angles",
    "load_motion",
    "look_at_pose",
    "save_motion",
    "verify_model_file",
]
