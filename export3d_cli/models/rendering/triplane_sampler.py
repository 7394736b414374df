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

Two implementations of the same lookup. On CPU, :class:`TriplaneLookup` keeps the
planes as one channels-last table of texel rows with a one-texel zero border and
reads each point as ``F.embedding_bag`` over 3 planes x 4 bilinear corners = 12
weighted rows. That is ``grid_sample``'s arithmetic (same texel coordinates, same
corner weights, zeros outside) without its channels-first gathers; on CPU it takes
about half the time, forward and backward. On other devices it calls ``grid_sample``
(:func:`sample_triplanes_grid_sample`, also the reference the tests compare with).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from export3d_cli.config import PlaneAxes

# For each plane: which point coordinates (0 = x, 1 = y, 2 = z) become (gx, gy).
PLANE_COORDINATES: dict[str, tuple[tuple[int, int], ...]] = {
    "orthogonal": ((0, 1), (1, 2), (2, 0)),
    "eg3d": ((0, 1), (0, 2), (2, 0)),
}
CORNERS = 12  # rows read per point: 3 planes x 4 bilinear corners


def plane_coordinate_index(plane_axes: PlaneAxes, device: torch.device) -> Tensor:
    """Which point coordinate becomes each of (gx, gy) on planes 0, 1, 2. Shapes: -> [6]."""
    try:
        pairs = PLANE_COORDINATES[plane_axes]
    except KeyError:
        raise ValueError(f"plane_axes must be one of {sorted(PLANE_COORDINATES)}, got {plane_axes!r}") from None
    return torch.tensor(pairs, device=device).reshape(-1)


def project_onto_planes(points: Tensor, plane_axes: PlaneAxes, box_warp: float) -> Tensor:
    """Shapes: points [N, P, 3] -> grid coordinates [N, 3, P, 2] in the [-1, 1] cube."""
    index = plane_coordinate_index(plane_axes, points.device)
    scaled = (2.0 / box_warp) * points
    return scaled[..., index].reshape(*points.shape[:-1], 3, 2).transpose(1, 2)  # [N, 3, P, 2]


def sample_triplanes_grid_sample(planes: Tensor, points: Tensor, plane_axes: PlaneAxes, box_warp: float) -> Tensor:
    """The lookup as ``grid_sample`` (bilinear, zeros, ``align_corners=False``) on the stacked planes.

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


def plane_table(planes: Tensor) -> Tensor:
    """The planes as a table of texel rows, channels last, each plane framed by one zero texel.

    Texel (y, x) of plane p of image n is row ((n*3 + p)*(H + 2) + y + 1)*(W + 2) + x + 1.
    Shapes: planes [N, 3, C, H, W] -> table [N*3*(H+2)*(W+2), C].
    """
    n, n_planes, c, h, w = planes.shape
    table = planes.new_zeros(n, n_planes, h + 2, w + 2, c)
    table[:, :, 1:-1, 1:-1] = planes.permute(0, 1, 3, 4, 2)
    return table.view(-1, c)


def _corners(coordinate: Tensor, size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Both bilinear corners along one axis, as ``grid_sample`` computes them.

    p = (g + 1) size/2 - 0.5, corners p0 = floor(p) and p0 + 1 with weights (p0 + 1 - p, p - p0).
    Each corner's index is shifted by one for the zero frame and clamped into it, so a
    corner off the plane reads a zero row. A NaN or infinite coordinate gets NaN weights
    (a NaN feature, as from ``grid_sample``) and an index in the frame.
    Shapes: coordinate [N, P, 3] -> framed indices (near, far) int64, weights (near, far).
    """
    texel = (coordinate + 1) * (size / 2) - 0.5
    below = torch.floor(texel)
    above = torch.nan_to_num(below + 1)  # far corner, and the framed index of the near one
    framed_near = torch.clamp(above, 0, size + 1).long()
    framed_far = torch.clamp(above + 1, 0, size + 1).long()
    return framed_near, framed_far, above - texel, texel - below


def bilinear_rows(
    points: Tensor, plane_size: tuple[int, int], plane_axes: PlaneAxes, box_warp: float, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Rows of :func:`plane_table` and weights whose weighted sum is the mean of the 3 bilinear lookups.

    Shapes: points [N, P, 3] -> rows [N, P, 12] (int64), weights [N, P, 12] (``dtype``).
    """
    h, w = plane_size
    n, p, _ = points.shape
    index = plane_coordinate_index(plane_axes, points.device)
    scaled = ((2.0 / box_warp) * points).to(dtype)
    x_near, x_far, wx_near, wx_far = _corners(scaled[..., index[0::2]], w)  # [N, P, 3] each
    y_near, y_far, wy_near, wy_far = _corners(scaled[..., index[1::2]], h)
    plane_start = torch.arange(n * 3, device=points.device).view(n, 1, 3) * ((h + 2) * (w + 2))
    row_near = y_near * (w + 2) + plane_start
    row_far = y_far * (w + 2) + plane_start
    rows = torch.stack([row_near + x_near, row_near + x_far, row_far + x_near, row_far + x_far], dim=-1)
    wy_near, wy_far = wy_near * (1 / 3), wy_far * (1 / 3)  # the mean over the planes
    weights = torch.stack([wy_near * wx_near, wy_near * wx_far, wy_far * wx_near, wy_far * wx_far], dim=-1)
    return rows.view(n, p, CORNERS), weights.view(n, p, CORNERS)


class _WeightedRowSum(torch.autograd.Function):
    """out[p] = sum_j weights[p, j] * table[rows[p, j]]: ``embedding_bag`` (mode "sum") with a scatter backward.

    ``embedding_bag``'s own CPU backward for the table does per-bag work after a sort and
    is several times slower than scattering the 12 corners with ``index_add_``.
    Shapes: table [T, C], rows [P, 12] (int64), weights [P, 12] -> [P, C].
    """

    @staticmethod
    def forward(ctx, table: Tensor, rows: Tensor, weights: Tensor) -> Tensor:
        ctx.save_for_backward(table, rows, weights)
        return F.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, None, Tensor | None]:
        table, rows, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            grad_table = torch.zeros_like(table)
            for corner_rows, corner_weights in zip(rows.t().contiguous(), weights.t().contiguous(), strict=True):
                grad_table.index_add_(0, corner_rows, grad * corner_weights.unsqueeze(-1))
        if ctx.needs_input_grad[2]:
            grad_weights = torch.bmm(F.embedding(rows, table), grad.unsqueeze(-1)).squeeze(-1)  # [P, 12]
        return grad_table, None, grad_weights


class TriplaneLookup:
    """Mean of the three bilinear plane lookups, the planes prepared once for many calls.

    Shapes: planes [N, 3, C, H, W]; ``lookup(points [N, P, 3]) -> features [N, P, C]``.
    """

    def __init__(
        self, planes: Tensor, plane_axes: PlaneAxes, box_warp: float, projection: Tensor | None = None
    ) -> None:
        """``projection`` W [C', C] (CPU only): look up W f instead of f — the decoder's first linear layer applied
        once per texel instead of once per sample point (both are linear, so the mean of the projected corners is
        the projection of the mean; the zero frame stays zero). ``projected`` says whether it was applied."""
        plane_coordinate_index(plane_axes, planes.device)  # reject an unknown layout before any work
        self.planes = planes
        self.plane_axes: PlaneAxes = plane_axes
        self.box_warp = box_warp
        self.table = plane_table(planes) if planes.device.type == "cpu" else None
        self.projected = self.table is not None and projection is not None
        if self.projected:
            self.table = self.table @ projection.t()  # [T, C']

    def __call__(self, points: Tensor) -> Tensor:
        if self.table is None:
            return sample_triplanes_grid_sample(self.planes, points, self.plane_axes, self.box_warp)
        n, p, _ = points.shape
        size = self.planes.shape[-2:]
        rows, weights = bilinear_rows(points, size, self.plane_axes, self.box_warp, self.table.dtype)
        features = _WeightedRowSum.apply(self.table, rows.view(n * p, CORNERS), weights.view(n * p, CORNERS))
        return features.view(n, p, -1)  # [N, P, C]


def sample_triplanes(planes: Tensor, points: Tensor, plane_axes: PlaneAxes, box_warp: float) -> Tensor:
    """Mean of the three bilinear plane lookups at each point.

    Shapes: planes [N, 3, C, H, W], points [N, P, 3] -> features [N, P, C].
    """
    return TriplaneLookup(planes, plane_axes, box_warp)(points)
