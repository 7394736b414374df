"""Vectorised, deterministic numpy triangle rasteriser with deferred shading.

Deferred design
---------------
:func:`rasterize` only resolves visibility: per pixel it returns the index of the visible
triangle, its perspective-correct barycentric weights and the camera-space depth
(:class:`Fragments`). Shading is the caller's business: :func:`interpolate` turns any per-vertex
attribute (UVs, normals, colours, part ids) into an image with those weights. The synthetic-head
generator needs several attribute images of one view (colour, normals, segmentation, depth), so
resolving visibility once and interpolating many times is both simpler and cheaper than a
rasteriser that shades.

Conventions
-----------
- Camera space is OpenCV's: x right, y down, z forward (z > 0 in front of the camera).
- Intrinsics are *normalised* (EG3D style): ``u = fx * x / z + s * y / z + cx`` with u, v in [0, 1]
  across the image; :func:`project` scales them to pixels.
- Screen coordinates are continuous pixel coordinates, x right, y down; (0, 0) is the top-left
  corner of the top-left pixel, so pixel (i, j) (row i, column j) is sampled at its centre
  (j + 0.5, i + 0.5).
- Winding: a triangle is *front-facing* when its vertices run counter-clockwise as seen by the
  viewer (OpenGL's default front face; for a right-handed mesh with outward normals
  (b - a) x (c - a) these are the faces whose normals point towards the camera). Because screen
  y points down, that is a *negative* cross product ``(b - a) x (c - a)`` of the screen
  positions; ``cull_backfaces`` drops the triangles whose cross product is positive.
- Coverage follows the top-left fill rule (as in Direct3D / OpenGL): a pixel centre exactly on an
  edge belongs to the triangle only if that edge is a left edge or a horizontal top edge. Two
  triangles sharing an edge therefore cover every pixel along it exactly once: no holes, no
  double coverage, which keeps meshes watertight without a depth tie to break.
- Depth test: nearest wins, on 1/z interpolated linearly in screen space (exact for planar
  triangles under perspective); exact ties go to the lowest triangle index, so the result never
  depends on the order in which fragments are processed.

Algorithm
---------
No Python loop over triangles: every triangle is split into the pixel rows its vertical extent
covers, each (triangle, row) pair gets its covered column span analytically from the two edges
crossing that row, and the spans are expanded into fragments with one ``np.repeat``. Work is
proportional to the covered pixels (plus one small step per row), whatever the triangle sizes. The z-buffer is
resolved with ``np.maximum.at`` on 1/z followed by ``np.minimum.at`` on the triangle index among
the nearest fragments. Barycentrics are computed only for the winning fragment of each pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR = 1e-6
# Bound on the pixels (clipped bounding-box area) expanded at once, ~100 MB of fragment arrays, so
# that many screen-sized triangles cannot exhaust memory; results do not depend on it.
_CHUNK_PIXELS = 1 << 21


@dataclass(frozen=True)
class Fragments:
    """Per-pixel visibility of one rasterised view.

    triangle:    int32 [H, W], index into the ``triangles`` array, -1 where nothing is drawn.
    barycentric: float32 [H, W, 3], perspective-correct weights of the visible triangle's three
                 vertices (sum to 1 on covered pixels, 0 where empty).
    depth:       float32 [H, W], camera-space z of the visible surface, inf where empty.
    """

    triangle: np.ndarray
    barycentric: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """bool [H, W]: pixels covered by some triangle."""
        return self.triangle >= 0


def project(
    points_camera: np.ndarray, intrinsics: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV camera-space points [V, 3] -> (screen [V, 2] in continuous pixels, depth [V] = z).

    ``intrinsics`` [3, 3] is normalised: pixel x = u * width, y = v * height with
    (u, v, 1) ~ intrinsics @ (x, y, z). Points with z <= 0 get non-finite or meaningless screen
    positions; :func:`rasterize` drops every triangle touching them via their depth.
    """
    points = np.asarray(points_camera, dtype=np.float64)
    k = np.asarray(intrinsics, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points_camera must be [V, 3], got {points.shape}")
    if k.shape != (3, 3):
        raise ValueError(f"intrinsics must be [3, 3], got {k.shape}")
    homogeneous = points @ k.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = homogeneous[:, :2] / homogeneous[:, 2:]
    return uv * np.array([width, height], dtype=np.float64), points[:, 2].copy()


def rasterize(
    screen: np.ndarray,
    depth: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    *,
    cull_backfaces: bool = False,
) -> Fragments:
    """Visible triangle, perspective-correct barycentrics and depth for every pixel.

    screen [V, 2]: vertex positions in continuous pixel coordinates (see the module docstring).
    depth [V]: camera-space z; triangles with a vertex at z <= NEAR (1e-6) are dropped, as are
    zero-area triangles and triangles with non-finite coordinates.
    triangles [F, 3]: vertex indices.
    cull_backfaces: drop triangles that are clockwise as seen by the viewer, i.e. whose screen
    cross product (b - a) x (c - a) is positive (y down).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    screen = np.asarray(screen, dtype=np.float64)
    depth = np.asarray(depth, dtype=np.float64)
    faces = np.asarray(triangles)
    if screen.ndim != 2 or screen.shape[1] != 2:
        raise ValueError(f"screen must be [V, 2], got {screen.shape}")
    if depth.shape != screen.shape[:1]:
        raise ValueError(f"depth must be [V] = {screen.shape[:1]}, got {depth.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"triangles must be integer [F, 3], got {faces.dtype} {faces.shape}")
    # Negative indices would silently wrap around to the last vertices.
    if faces.size and (faces.min() < 0 or faces.max() >= len(screen)):
        raise ValueError(f"triangle vertex indices must lie in [0, {len(screen)})")

    prepared = _prepare(screen, depth, faces.astype(np.int64), height, width, cull_backfaces)
    inv_z = np.full(height * width, -np.inf)
    candidates = [_nearest_fragments(prepared, chunk, inv_z, width) for chunk in _chunks(prepared.bbox_area)]
    owner = np.full(height * width, len(prepared.kept), dtype=np.int64)
    if candidates:
        pixel, local, value = (np.concatenate(parts) for parts in zip(*candidates, strict=True))
        nearest = value == inv_z[pixel]
        np.minimum.at(owner, pixel[nearest], local[nearest])
    return _fragments_image(prepared, owner.reshape(height, width), inv_z.reshape(height, width))


def interpolate(fragments: Fragments, triangles: np.ndarray, attributes: np.ndarray) -> np.ndarray:
    """Per-vertex attributes [V, C] -> float32 image [H, W, C] (0 where nothing is drawn).

    ``triangles`` must be the array given to :func:`rasterize`; the weights are perspective-correct,
    so attributes vary linearly over each triangle's 3D surface, not over its screen projection.
    """
    values = np.asarray(attributes)
    faces = np.asarray(triangles)
    if values.ndim != 2:
        raise ValueError(f"attributes must be [V, C], got {values.shape}")
    # Triangle -1 (empty pixel) picks the trailing zero row, so every pixel is handled in one gather.
    corners = np.zeros((len(faces) + 1, 3, values.shape[1]), dtype=np.float32)
    corners[:-1] = values[faces]
    return np.einsum("hwk,hwkc->hwc", fragments.barycentric, corners[fragments.triangle])


def downsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Box-filter [H*f, W*f, C] (or [H*f, W*f]) down to [H, W, C]: averages each f x f block.

    Used to anti-alias by supersampling. Float input keeps its dtype; integer input gives float32.
    """
    image = np.asarray(image)
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor}")
    if image.ndim not in (2, 3) or image.shape[0] % factor or image.shape[1] % factor:
        raise ValueError(f"image [H, W(, C)] must have H and W divisible by {factor}, got {image.shape}")
    dtype = image.dtype if np.issubdtype(image.dtype, np.floating) else np.float32
    height, width = image.shape[0] // factor, image.shape[1] // factor
    blocks = image.reshape(height, factor, width, factor, *image.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float64).astype(dtype)


@dataclass(frozen=True)
class _Prepared:
    """Per-triangle data of the K triangles that survive culling and clipping."""

    kept: np.ndarray  # [K] indices into the triangles array, ascending
    rows0: np.ndarray  # [K] first pixel row whose centre lies in the triangle's vertical extent
    nrows: np.ndarray  # [K] number of such rows (bottom row excluded when y_c == ymax, see _prepare)
    bbox_area: np.ndarray  # [K] clipped bounding-box area in pixels, to size the chunks
    # [3 (d/dx, d/dy, constant), 3 (vertex), K]: b_k / z_k = w[0, k] x + w[1, k] y + w[2, k] with b the screen
    # barycentrics; affine in screen space, summing to 1/z. Component-major to keep gathers contiguous.
    weights: np.ndarray
    # [10, K]: x, y of the top, middle and bottom vertex (sorted by y), 1.0 where the long top-bottom
    # edge is a left edge, and the 1/z coefficients (d/dx, d/dy, constant): all a row needs, gathered at once.
    row_table: np.ndarray


def _prepare(
    screen: np.ndarray, depth: np.ndarray, faces: np.ndarray, height: int, width: int, cull_backfaces: bool
) -> _Prepared:
    """Per-triangle setup, dropping what cannot be drawn: behind the near plane, zero-area, non-finite, culled,
    or with no pixel row on screen."""
    x, y, z = screen[faces, 0].T, screen[faces, 1].T, depth[faces].T  # [3, F] each
    with np.errstate(invalid="ignore", over="ignore"):
        cross = (x[1] - x[0]) * (y[2] - y[0]) - (x[2] - x[0]) * (y[1] - y[0])
        keep = (z > NEAR).all(axis=0) & np.isfinite(cross) & (cross != 0)
        if cull_backfaces:
            keep &= cross < 0
        # Rows whose centre y_c lies in [ymin, ymax): the row at ymax is empty for a pointed bottom
        # and excluded by the fill rule for a horizontal bottom edge.
        rows0 = np.clip(np.ceil(y.min(axis=0) - 0.5), 0, height)
        rows1 = np.clip(np.ceil(y.max(axis=0) - 0.5), 0, height)
        cols = np.clip(np.ceil(x.max(axis=0) - 0.5), 0, width) - np.clip(np.ceil(x.min(axis=0) - 0.5), 0, width)
    keep &= rows1 > rows0
    kept = np.flatnonzero(keep)
    x, y, z, cross, rows0, nrows = x[:, kept], y[:, kept], z[:, kept], cross[kept], rows0[kept], (rows1 - rows0)[kept]

    # Screen barycentric of vertex k = edge function of the opposite edge / cross.
    nxt, prv = [1, 2, 0], [2, 0, 1]
    with np.errstate(over="ignore"):
        scale = 1.0 / (cross * z)
        weights = np.stack(
            [(y[nxt] - y[prv]) * scale, (x[prv] - x[nxt]) * scale, (x[nxt] * y[prv] - x[prv] * y[nxt]) * scale]
        )

    order = np.argsort(y, axis=0, kind="stable")
    xs, ys = np.take_along_axis(x, order, axis=0), np.take_along_axis(y, order, axis=0)
    # The middle vertex lies right of the top-bottom edge (y down) exactly when this cross product is negative.
    long_is_left = (xs[2] - xs[0]) * (ys[1] - ys[0]) - (ys[2] - ys[0]) * (xs[1] - xs[0]) < 0
    row_table = np.stack([xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], long_is_left, *weights.sum(axis=1)])
    return _Prepared(
        kept=kept,
        rows0=rows0.astype(np.int64),
        nrows=nrows.astype(np.int64),
        bbox_area=nrows.astype(np.int64) * (cols[kept].astype(np.int64) + 1),
        weights=weights,
        row_table=row_table,
    )


def _chunks(sizes: np.ndarray) -> list[np.ndarray]:
    """Consecutive groups of triangle indices whose summed size stays near _CHUNK_PIXELS."""
    chunks = []
    total = np.cumsum(sizes)
    start = 0
    while start < len(sizes):
        before = total[start - 1] if start else 0
        stop = max(int(np.searchsorted(total, before + _CHUNK_PIXELS, side="right")), start + 1)
        chunks.append(np.arange(start, stop))
        start = stop
    return chunks


def _lerp_x(xa: np.ndarray, ya: np.ndarray, xb: np.ndarray, yb: np.ndarray, yc: np.ndarray) -> np.ndarray:
    """x where the edge from its top end (xa, ya) to its bottom end (xb, yb) crosses the row y = yc.

    The two triangles sharing an edge pass the same endpoints in the same order (top first), so
    they get bit-identical crossings: with the fill rule this makes shared edges watertight. The
    result is exactly xa on the top end's row, the only end ever evaluated (rows stop short of
    ymax and the lower short edge takes over on the middle vertex's row), so a vertex on a pixel
    centre is seen at the same x by every triangle around it.
    """
    return xa + (xb - xa) * ((yc - ya) / (yb - ya))


def _nearest_fragments(
    prepared: _Prepared, chunk: np.ndarray, inv_z: np.ndarray, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rasterise the chunk's triangles into the 1/z buffer inv_z [H*W] (in place).

    Returns the fragments at least as near as everything seen so far: flat pixel [N], kept
    triangle index [N], 1/z [N]; the caller re-checks them against the final buffer.
    """
    counts = prepared.nrows[chunk]
    local = np.repeat(chunk, counts)  # [R] triangle of each (triangle, row) pair
    row = np.arange(len(local)) - np.repeat(np.cumsum(counts) - counts - prepared.rows0[chunk], counts)
    yc = row + 0.5
    xt, yt, xm, ym, xb, yb, long_is_left, z_dx, z_dy, z_c = np.take(prepared.row_table, local, axis=1)

    # Each row crosses the long top-bottom edge and one short edge: the upper one above the middle
    # vertex, the lower one from it down (at y_c == ym both cross at xm). A horizontal short edge is
    # never selected since rows lie in [ymin, ymax).
    upper = yc < ym
    long_col = np.ceil(_lerp_x(xt, yt, xb, yb, yc) - 0.5)
    short_col = np.ceil(
        _lerp_x(np.where(upper, xt, xm), np.where(upper, yt, ym), np.where(upper, xm, xb), np.where(upper, ym, yb), yc)
        - 0.5
    )
    # Fill rule: centres on a left edge are in (x_c >= crossing), on a right edge out (x_c < crossing).
    left = long_is_left > 0
    first = np.where(left, long_col, short_col).clip(0, width).astype(np.int64)
    span = (np.where(left, short_col, long_col).clip(0, width).astype(np.int64) - first).clip(0)

    # 1/z along a row: its value at the first covered column plus a slope per column, so that a
    # fragment's value depends only on its triangle and pixel (not on chunking or order).
    base = z_dy * yc + z_c + z_dx * (first + 0.5)
    pair = np.repeat(np.arange(len(local)), span)  # [N] (triangle, row) pair of each fragment
    offset = np.arange(len(pair)) - (np.cumsum(span) - span)[pair]  # column - first
    pixel = (row * width + first)[pair] + offset
    value = base[pair] + z_dx[pair] * offset
    np.maximum.at(inv_z, pixel, value)
    nearest = np.flatnonzero(value == inv_z[pixel])
    return pixel[nearest], local[pair[nearest]], value[nearest]


def _fragments_image(prepared: _Prepared, owner: np.ndarray, inv_z: np.ndarray) -> Fragments:
    """Fragments from the resolved buffers: owner [H, W] kept index (K = empty), inv_z [H, W] (1/z)."""
    height, width = owner.shape
    count = len(prepared.kept)
    covered = owner < count
    # Zero weights for empty pixels let every pixel be evaluated at once, with no scatter. Only
    # vertices 0 and 1 are needed: their sum with vertex 2 is 1/z, already in the buffer.
    table = np.zeros((6, count + 1))
    table[:, :count] = prepared.weights[:, :2].reshape(6, count)
    dx, dy, c = np.take(table, owner, axis=1).reshape(3, 2, height, width)
    xc = np.arange(width) + 0.5
    yc = (np.arange(height) + 0.5)[:, None]
    with np.errstate(divide="ignore"):
        z = 1.0 / inv_z
    first_two = dx * xc
    first_two += dy * yc
    first_two += c
    first_two *= np.where(covered, z, 0.0)

    barycentric = np.empty((height, width, 3), dtype=np.float32)
    barycentric[..., 0] = first_two[0]
    barycentric[..., 1] = first_two[1]
    barycentric[..., 2] = np.where(covered, 1.0 - first_two[0] - first_two[1], 0.0)
    triangle = np.append(prepared.kept, -1)[owner].astype(np.int32)
    return Fragments(
        triangle=triangle,
        barycentric=barycentric,
        depth=np.where(covered, z, np.inf).astype(np.float32),
    )
