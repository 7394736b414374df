"""The paper's metrics (DESIGN §9): is it the person in the photo, and does the face do what the driver does?

CSIM (dlib ResNet), AKD (dlib 68 keypoints), AED and expression_r (MediaPipe
blendshapes), APD (head angles), face_found, PSNR and SSIM — for any video
(``score_video``) and, through ``ReenactmentScores``, for ``evaluate`` and
training validation. None of these is ever a training loss.
"""

from export3d_cli.metrics.expression import (
    EXPRESSION_SIGNALS,
    average_expression_distance,
    expression_correlations,
    expression_signal,
    pearson_r,
)
from export3d_cli.metrics.face_measurement import AKD_CROP_RESOLUTION, FaceMeasurement, FaceMeter
from export3d_cli.metrics.image_quality import psnr, ssim, to_model_range
from export3d_cli.metrics.pose import average_pose_distance
from export3d_cli.metrics.reenactment_scores import ReenactmentScores
from export3d_cli.metrics.video_score import score_video

__all__ = [
    "AKD_CROP_RESOLUTION",
    "EXPRESSION_SIGNALS",
    "FaceMeasurement",
    "FaceMeter",
    "ReenactmentScores",
    "average_expression_distance",
    "average_pose_distance",
    "expression_correlations",
    "expression_signal",
    "pearson_r",
    "psnr",
    "score_video",
    "ssim",
    "to_model_range",
]
