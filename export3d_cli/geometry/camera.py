"""EG3D camera: the 25-number label, FFHQ intrinsics and the look-at pose sampler.

Conventions (``eg3d-conventions.md`` §2):

- camera frame = OpenCV: +x image right, +y image down, +z viewing direction;
- world frame: +y up, the face looks towards +z; a frontal camera sits near
  (0, 0, 2.7) and looks along -z;
- label p = [cam2world (4x4, row-major) | normalised intrinsics (3x3, row-major)].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from export3d_cli.camera_conventions import CAMERA_PIVOT, CAMERA_RADIUS, FFHQ_FOCAL, LABEL_DIM


def ffhq_intrinsics(dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> Tensor:
    """Normalised FFHQ intrinsics [3, 3]: fx = fy = 4.2647, cx = cy = 0.5, no skew."""
    return torch.tensor([[FFHQ_FOCAL, 0.0, 0.5], [0.0, FFHQ_FOCAL, 0.5], [0.0, 0.0, 1.0]], dtype=dtype, device=device)


def _as_tensor(value: float | Tensor, dtype: torch.dtype) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(dtype if not value.is_floating_point() else value.dtype)
    return torch.tensor(float(value), dtype=dtype)


def _normalize(v: Tensor) -> Tensor:
    return v / torch.norm(v, dim=-1, keepdim=True)


def look_at_cam2world(
    yaw: float | Tensor,
    pitch: float | Tensor,
    radius: float = CAMERA_RADIUS,
    pivot: tuple[float, float, float] | Tensor = CAMERA_PIVOT,
) -> Tensor:
    """EG3D's look-at pose sampler with zero noise.

    ``yaw`` and ``pitch`` (radians, broadcastable) are offsets from the frontal
    view: the sampler receives h = pi/2 + yaw, v = pi/2 + pitch. Positive yaw
    puts the camera at +x; positive pitch puts it below the face (the vertical
    angle goes through ``arccos(1 - 2v/pi)``). The camera centre lies on the
    sphere of ``radius`` about the world origin and looks at ``pivot``.

    Shapes: yaw, pitch [...] -> cam2world [..., 4, 4] (OpenCV camera-to-world).
    """
    yaw_t = _as_tensor(yaw, torch.float32)
    pitch_t = _as_tensor(pitch, torch.float32)
    yaw_t, pitch_t = torch.broadcast_tensors(yaw_t, pitch_t)
    dtype = yaw_t.dtype
    h = math.pi / 2 + yaw_t
    v = torch.clamp(math.pi / 2 + pitch_t, 1e-5, math.pi - 1e-5) / math.pi
    phi = torch.arccos(1 - 2 * v)
    theta = h
    origin = torch.stack(
        [
            radius * torch.sin(phi) * torch.cos(math.pi - theta),
            radius * torch.cos(phi),
            radius * torch.sin(phi) * torch.sin(math.pi - theta),
        ],
        dim=-1,
    )  # [..., 3]
    pivot_t = torch.as_tensor(pivot, dtype=dtype, device=origin.device)
    # Normalised twice, as the reference does (sampler, then matrix builder): same rounding.
    forward = _normalize(_normalize(pivot_t - origin))
    up = torch.tensor([0.0, 1.0, 0.0], dtype=dtype, device=origin.device).expand_as(forward)
    right = -_normalize(torch.linalg.cross(up, forward, dim=-1))
    down = _normalize(torch.linalg.cross(forward, right, dim=-1))
    cam2world = torch.zeros(*origin.shape[:-1], 4, 4, dtype=dtype, device=origin.device)
    cam2world[..., :3, 0] = right
    cam2world[..., :3, 1] = down
    cam2world[..., :3, 2] = forward
    cam2world[..., :3, 3] = origin
    cam2world[..., 3, 3] = 1.0
    return cam2world


def camera_label(cam2world: Tensor, intrinsics: Tensor) -> Tensor:
    """Pack the EG3D label. Shapes: [..., 4, 4], [..., 3, 3] -> [..., 25]."""
    if cam2world.shape[-2:] != (4, 4) or intrinsics.shape[-2:] != (3, 3):
        raise ValueError(
            f"camera_label expects [..., 4, 4] and [..., 3, 3], got {tuple(cam2world.shape)} "
            f"and {tuple(intrinsics.shape)}"
        )
    batch = torch.broadcast_shapes(cam2world.shape[:-2], intrinsics.shape[:-2])
    cam2world = cam2world.expand(*batch, 4, 4)
    intrinsics = intrinsics.expand(*batch, 3, 3)
    return torch.cat([cam2world.flatten(-2), intrinsics.flatten(-2)], dim=-1)


def split_camera_label(label: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of ``camera_label``. Shapes: [..., 25] -> ([..., 4, 4], [..., 3, 3])."""
    if label.shape[-1] != LABEL_DIM:
        raise ValueError(f"an EG3D camera label has {LABEL_DIM} numbers, got shape {tuple(label.shape)}")
    cam2world = label[..., :16].reshape(*label.shape[:-1], 4, 4)
    intrinsics = label[..., 16:].reshape(*label.shape[:-1], 3, 3)
    return cam2world, intrinsics


@dataclass(frozen=True)
class Camera:
    """A batch of EG3D cameras: OpenCV cam2world [..., 4, 4] and normalised intrinsics [..., 3, 3]."""

    cam2world: Tensor
    intrinsics: Tensor

    @classmethod
    def from_label(cls, label: Tensor) -> Camera:
        return cls(*split_camera_label(label))

    @classmethod
    def look_at(
        cls,
        yaw: float | Tensor,
        pitch: float | Tensor,
        radius: float = CAMERA_RADIUS,
        pivot: tuple[float, float, float] = CAMERA_PIVOT,
    ) -> Camera:
        """FFHQ-intrinsics look-at camera; yaw/pitch in radians, offsets from frontal."""
        cam2world = look_at_cam2world(yaw, pitch, radius, pivot)
        intrinsics = ffhq_intrinsics(cam2world.dtype, cam2world.device).expand(*cam2world.shape[:-2], 3, 3)
        return cls(cam2world, intrinsics)

    def label(self) -> Tensor:
        return camera_label(self.cam2world, self.intrinsics)

    @property
    def origin(self) -> Tensor:
        """Camera centre in world coordinates [..., 3]."""
        return self.cam2world[..., :3, 3]

    @property
    def forward(self) -> Tensor:
        """Viewing direction in world coordinates [..., 3]."""
        return self.cam2world[..., :3, 2]

    def mirrored(self) -> Camera:
        """The pose of the horizontally mirrored image: F P F with F = diag(-1, 1, 1, 1)."""
        flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=self.cam2world.dtype, device=self.cam2world.device))
        return Camera(flip @ self.cam2world @ flip, self.intrinsics)
