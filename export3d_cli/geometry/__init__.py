"""Cameras and rays in EG3D's conventions (``../shared/docs/eg3d-conventions.md`` §2-3)."""

from export3d_cli.geometry.camera import (
    FFHQ_FOCAL,
    Camera,
    camera_label,
    ffhq_intrinsics,
    look_at_cam2world,
    split_camera_label,
)
from export3d_cli.geometry.rays import pixel_rays

__all__ = [
    "FFHQ_FOCAL",
    "Camera",
    "camera_label",
    "ffhq_intrinsics",
    "look_at_cam2world",
    "pixel_rays",
    "split_camera_label",
]
