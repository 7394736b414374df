"""One ray per pixel centre, EG3D's ray sampler (``eg3d-conventions.md`` §3)."""

from __future__ import annotations

import torch
from torch import Tensor


def pixel_rays(cam2world: Tensor, intrinsics: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """Rays through the centres of a ``resolution``² pixel grid, row-major (ray m = i*R + j).

    Pixel (i, j) has normalised image coordinates u = j/R + 0.5/R, v = i/R + 0.5/R;
    the camera-space direction is ((u - cx + cy*s/fy - s*v/fy)/fx, (v - cy)/fy, 1).
    Directions are unit length, so depths along a ray are Euclidean distances.

    Shapes: cam2world [N, 4, 4], intrinsics [N, 3, 3] -> origins [N, M, 3], directions [N, M, 3].
    """
    n = cam2world.shape[0]
    dtype, device = cam2world.dtype, cam2world.device
    origin = cam2world[:, :3, 3]  # [N, 3]
    fx = intrinsics[:, 0, 0, None]
    fy = intrinsics[:, 1, 1, None]
    cx = intrinsics[:, 0, 2, None]
    cy = intrinsics[:, 1, 2, None]
    skew = intrinsics[:, 0, 1, None]

    index = torch.arange(resolution, dtype=dtype, device=device)
    rows, cols = torch.meshgrid(index, index, indexing="ij")
    # Computed as index*(1/R) + 0.5/R, in this order, like the reference (same float rounding).
    u = (cols * (1.0 / resolution) + (0.5 / resolution)).reshape(1, -1)  # [1, M]
    v = (rows * (1.0 / resolution) + (0.5 / resolution)).reshape(1, -1)  # [1, M]

    z = torch.ones_like(u).expand(n, -1)  # [N, M]
    x = (u - cx + cy * skew / fy - skew * v / fy) / fx * z
    y = (v - cy) / fy * z
    cam_points = torch.stack([x, y, z, torch.ones_like(z)], dim=1)  # [N, 4, M]
    world_points = torch.bmm(cam2world, cam_points).permute(0, 2, 1)[..., :3]  # [N, M, 3]
    directions = torch.nn.functional.normalize(world_points - origin[:, None, :], dim=2)
    origins = origin[:, None, :].expand(-1, resolution * resolution, -1)
    return origins, directions
