"""Tri-plane lookup and aggregation, paper Eq. (7) (``eg3d-conventions.md`` §5).

A point x in world space is scaled to g = (2 / box_warp) x, projected to 2-D grid
coordinates (gx indexes columns W, gy indexes rows H) on each plane, looked up
bilinearly with zero padding and ``align_corners=False``, and the three
features are averaged.

Plane layouts:

- ``"orthogonal"`` (default, the paper's xy, yz, zx planes):
  plane 0 (gx, gy) = (x, y), plane 1 = (y, z), plane 2 = (z, x).
- ``"eg3d"`` (EG3D's historical layout, for its checkpoints):
  plane 0 = (x, y), plane 1 = (x, z), plane 2 = (z, x) -- the third plane is
  the xz plane transposed, so y enters only through plane 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from export3d_cli.config import PlaneAxes

# For each plane: which point coordinates (0 = x, 1 = y, 2 = z) become (gx, gy).
PLANE_COORDINATES: dict[str, tuple[tuple[int, int], ...]] = {
    "orthogonal": ((0, 1), (1, 2), (2, 0)),
    "eg3d": ((0, 1), (0, 2), (2, 0)),
}


def project_onto_planes(points: Tensor, plane_axes: PlaneAxes, box_warp: float) -> Tensor:
    """Shapes: points [N, P, 3] -> grid coordinates [N, 3, P, 2] in the [-1, 1] cube."""
    try:
        pairs = PLANE_COORDINATES[plane_axes]
    except KeyError:
        raise ValueError(f"plane_axes must be one of {sorted(PLANE_COORDINATES)}, got {plane_axes!r}") from None
    scaled = (2.0 / box_warp) * points
    index = torch.tensor(pairs, device=points.device).reshape(-1)  # [6]
    return scaled[..., index].reshape(*points.shape[:-1], 3, 2).transpose(1, 2)  # [N, 3, P, 2]


def sample_triplanes(planes: Tensor, points: Tensor, plane_axes: PlaneAxes, box_warp: float) -> Tensor:
    """Mean of the three bilinear plane lookups at each point.

    Shapes: planes [N, 3, C, H, W], points [N, P, 3] -> features [N, P, C].
    """
    n, n_planes, c, h, w = planes.shape
    grid = project_onto_planes(points, plane_axes, box_warp)  # [N, 3, P, 2]
    grid = grid.reshape(n * n_planes, 1, -1, 2)  # [N*3, 1, P, 2]
    sampled = F.grid_sample(
        planes.reshape(n * n_planes, c, h, w),
        grid.to(planes.dtype),
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # [N*3, C, 1, P]
    sampled = sampled.reshape(n, n_planes, c, -1)  # [N, 3, C, P]
    return sampled.mean(dim=1).transpose(1, 2)  # [N, P, C]
