"""Analytic checks of the numpy rasteriser: coverage and fill rule, depth test, perspective, culling, determinism."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from export3d_cli.synth import rasterizer
from export3d_cli.synth.rasterizer import Fragments, downsample, interpolate, project, rasterize


def centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (x [H, W], y [H, W])."""
    y, x = np.mgrid[0:height, 0:width] + 0.5
    return x, y


def edge_values(tri: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[3, H, W] edge functions of a [3, 2] screen triangle; edge k runs from vertex k to k + 1.

    Inside, all three share the sign of the winding, and e[(k + 1) % 3] / sum(e) is vertex k's barycentric.
    """
    values = []
    for k in range(3):
        (xa, ya), (xb, yb) = tri[k], tri[(k + 1) % 3]
        values.append((xb - xa) * (y - ya) - (yb - ya) * (x - xa))
    return np.array(values)


def brute_force_inside(tri: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(strictly inside [H, W], within 1e-7 of an edge [H, W]) by evaluating every pixel centre."""
    x, y = centres(height, width)
    e = edge_values(tri, x, y)
    e *= np.sign(e.sum(axis=0))
    return (e > 0).all(axis=0), (np.abs(e) < 1e-7).any(axis=0)


def raster_one(screen: np.ndarray, face: list[int], height: int, width: int) -> Fragments:
    """One triangle at depth 1."""
    return rasterize(screen, np.ones(len(screen)), np.array([face]), height, width)


# --- coverage and fill rule ------------------------------------------------------------------------------------------


def test_half_image_triangle_covers_pixel_centres_strictly_inside() -> None:
    screen = np.array([[0.0, 0.0], [16.0, 0.0], [0.0, 16.0]])
    fragments = raster_one(screen, [0, 1, 2], 16, 16)
    i, j = np.mgrid[0:16, 0:16]
    # Centres (j + 0.5, i + 0.5) with i + j == 15 lie on the hypotenuse x + y = 16: a bottom-right edge, left out.
    assert fragments.mask.sum() == 120
    np.testing.assert_array_equal(fragments.mask, i + j < 15)
    either_side = [(0, 14, True), (0, 15, False), (7, 7, True), (7, 8, False), (14, 0, True), (15, 0, False)]
    for row, col, covered in either_side:
        assert fragments.mask[row, col] == covered, (row, col)
    assert (fragments.triangle[fragments.mask] == 0).all()


def test_complementary_triangle_takes_the_shared_hypotenuse() -> None:
    screen = np.array([[16.0, 0.0], [16.0, 16.0], [0.0, 16.0]])
    fragments = raster_one(screen, [0, 1, 2], 16, 16)
    i, j = np.mgrid[0:16, 0:16]
    np.testing.assert_array_equal(fragments.mask, i + j >= 15)


@pytest.mark.parametrize("seed", range(4))
def test_random_triangles_match_brute_force_edge_functions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    height, width = 20, 27  # not square, to catch swapped axes
    for _ in range(50):
        tri = rng.uniform([-8, -8], [width + 8, height + 8], size=(3, 2))
        inside, on_edge = brute_force_inside(tri, height, width)
        fragments = raster_one(tri, [0, 1, 2], height, width)
        np.testing.assert_array_equal(fragments.mask[~on_edge], inside[~on_edge])
        # Flat depth: the perspective-correct weights are the screen barycentrics.
        e = edge_values(tri, *centres(height, width))
        expected = np.stack([e[1], e[2], e[0]], axis=-1) / e.sum(axis=0)[..., None]
        np.testing.assert_allclose(fragments.barycentric[fragments.mask], expected[fragments.mask], atol=1e-5)


def test_square_split_along_its_diagonal_is_watertight() -> None:
    # Diagonal (2, 2)-(12, 12) passes through pixel centres: each must go to exactly one triangle.
    screen = np.array([[2.0, 2.0], [12.0, 2.0], [12.0, 12.0], [2.0, 12.0]])
    faces = [[0, 1, 2], [0, 2, 3]]
    both = rasterize(screen, np.ones(4), np.array(faces), 16, 16)
    square = np.zeros((16, 16), dtype=bool)
    square[2:12, 2:12] = True
    np.testing.assert_array_equal(both.mask, square)
    alone = [raster_one(screen, face, 16, 16).mask for face in faces]
    np.testing.assert_array_equal(alone[0].astype(int) + alone[1].astype(int), square.astype(int))


def test_jittered_grid_mesh_covers_each_pixel_exactly_once() -> None:
    rng = np.random.default_rng(7)
    xs, ys = np.meshgrid(np.arange(2.0, 15.0, 2.0), np.arange(3.0, 14.0, 2.0))
    interior = (xs > 2) & (xs < 14) & (ys > 3) & (ys < 13)
    # Half-pixel jitters put many interior vertices exactly on pixel centres; the rest are random.
    jitter = rng.choice([-0.5, 0.0, 0.5], size=(*xs.shape, 2))
    jitter = np.where(rng.random((*xs.shape, 1)) < 0.5, jitter, rng.uniform(-0.7, 0.7, size=(*xs.shape, 2)))
    vertices = np.stack([xs, ys], axis=-1) + jitter * interior[..., None]
    rows, cols = xs.shape
    faces = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            a, b, d, e = r * cols + c, r * cols + c + 1, (r + 1) * cols + c, (r + 1) * cols + c + 1
            faces += [[a, b, e], [a, e, d]] if rng.random() < 0.5 else [[a, b, d], [b, e, d]]
    screen = vertices.reshape(-1, 2)
    rectangle = np.zeros((16, 16), dtype=int)
    rectangle[3:13, 2:14] = 1
    counts = sum(raster_one(screen, face, 16, 16).mask.astype(int) for face in faces)
    np.testing.assert_array_equal(counts, rectangle)
    fragments = rasterize(screen, np.ones(len(screen)), np.array(faces), 16, 16)
    np.testing.assert_array_equal(fragments.mask, rectangle.astype(bool))


def test_fans_around_a_vertex_on_a_pixel_centre_cover_it_exactly_once() -> None:
    # The centre vertex lies on a left and a right edge of several triangles at once (and on horizontal or
    # vertical spokes): the fill rule must hand it to exactly one. Rim vertices are often off-screen.
    rng = np.random.default_rng(11)
    centre = np.array([100.5, 90.5])  # the centre of pixel (90, 100)
    for _ in range(40):
        count = int(rng.integers(3, 8))
        angles = rng.uniform(0, 2 * np.pi, count)
        # Some spokes axis-aligned: horizontal and vertical edges through the pixel centre.
        angles = np.sort(np.where(rng.random(count) < 0.3, np.round(angles / (np.pi / 2)) * (np.pi / 2), angles))
        gaps = np.diff(np.append(angles, angles[0] + 2 * np.pi))
        if gaps.max() >= np.pi or (np.abs(np.sin(gaps)) < 1e-6).any():
            continue  # the fan must surround its centre with proper triangles
        ring = np.column_stack([np.cos(angles), np.sin(angles)]) * rng.uniform(3.0, 400.0, size=(count, 1))
        screen = np.concatenate([[centre], centre + ring])
        faces = [[0, 1 + k, 1 + (k + 1) % count] for k in range(count)]
        counts = sum(raster_one(screen, face, 128, 128).mask.astype(int) for face in faces)
        assert counts[90, 100] == 1 and counts.max() == 1


# --- depth test ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("near_first", [True, False])
def test_nearer_triangle_wins_in_either_order(near_first: bool) -> None:
    screen = np.array([[1.0, 1.0], [15.0, 1.0], [1.0, 15.0], [3.0, 3.0], [15.0, 3.0], [3.0, 15.0]])
    depth = np.array([2.0, 2.0, 2.0, 5.0, 5.0, 5.0])
    near, far = [0, 1, 2], [3, 4, 5]
    faces = np.array([near, far] if near_first else [far, near])
    fragments = rasterize(screen, depth, faces, 16, 16)
    near_index = 0 if near_first else 1
    near_mask = raster_one(screen, near, 16, 16).mask
    far_mask = raster_one(screen, far, 16, 16).mask
    assert (near_mask & far_mask).sum() > 30 and (far_mask & ~near_mask).sum() > 10
    np.testing.assert_array_equal(fragments.triangle[near_mask], near_index)
    np.testing.assert_array_equal(fragments.triangle[far_mask & ~near_mask], 1 - near_index)
    np.testing.assert_allclose(fragments.depth[near_mask], 2.0, rtol=1e-6)
    np.testing.assert_allclose(fragments.depth[far_mask & ~near_mask], 5.0, rtol=1e-6)


def test_interpenetrating_triangles_switch_at_the_intersection_line() -> None:
    height = width = 32
    intrinsics = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    # A flat triangle on z = 3.3 and a tilted one on z = 3 + 0.5 x, both covering the whole view,
    # meet along x = 0.6: on the pixel rays x / z = 0.6 / 3.3, at pixel x = (0.6 / 3.3 + 0.5) * 32 = 21.82.
    # Left of it the tilted triangle (index 1) is nearer.
    xy = np.array([[-4.0, -8.0], [12.0, -8.0], [-4.0, 16.0]])
    flat = np.column_stack([xy, np.full(3, 3.3)])
    tilted = np.column_stack([xy, 3.0 + 0.5 * xy[:, 0]])
    screen, depth = project(np.concatenate([flat, tilted]), intrinsics, height, width)
    fragments = rasterize(screen, depth, np.array([[0, 1, 2], [3, 4, 5]]), height, width)
    assert fragments.mask.all()
    switch = (0.6 / 3.3 + 0.5) * width
    expected = np.where(np.arange(width) + 0.5 < switch, 1, 0)
    assert expected[21] == 1 and expected[22] == 0
    np.testing.assert_array_equal(fragments.triangle, np.broadcast_to(expected, (height, width)))
    np.testing.assert_allclose(fragments.depth[:, 22:], 3.3, rtol=1e-6)


def test_exact_depth_ties_go_to_the_lowest_triangle_index() -> None:
    screen = np.array([[0.0, 0.0], [16.0, 0.0], [0.0, 16.0]])
    faces = np.array([[0, 1, 2]] * 3)
    fragments = rasterize(screen, np.full(3, 2.0), faces, 16, 16)
    assert (fragments.triangle[fragments.mask] == 0).all()


# --- perspective ------------------------------------------------------------------------------------------------------


def test_barycentrics_are_perspective_correct() -> None:
    height, width = 48, 64
    intrinsics = np.array([[1.1, 0.0, 0.5], [0.0, 1.4, 0.45], [0.0, 0.0, 1.0]])
    origin, e1, e2 = np.array([-0.6, -0.4, 1.5]), np.array([1.2, 0.0, 2.0]), np.array([0.0, 0.9, 0.3])
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    points = origin + uv[:, :1] * e1 + uv[:, 1:] * e2
    faces = np.array([[0, 1, 2], [1, 3, 2]])
    screen, depth = project(points, intrinsics, height, width)
    fragments = rasterize(screen, depth, faces, height, width)
    mask = fragments.mask
    assert mask.sum() > 500
    interpolated = interpolate(fragments, faces, uv)

    # Ray through each pixel centre: t * d = origin + u e1 + v e2 with d = K^-1 (x / W, y / H, 1).
    x, y = centres(height, width)
    rays = np.linalg.solve(intrinsics, np.stack([x / width, y / height, np.ones_like(x)], axis=-1)[..., None])[..., 0]
    system = np.stack([rays, np.broadcast_to(-e1, rays.shape), np.broadcast_to(-e2, rays.shape)], axis=-1)
    t, u, v = np.moveaxis(np.linalg.solve(system, np.broadcast_to(origin, rays.shape)[..., None])[..., 0], -1, 0)
    np.testing.assert_allclose(interpolated[mask, 0], u[mask], atol=1e-4)
    np.testing.assert_allclose(interpolated[mask, 1], v[mask], atol=1e-4)
    np.testing.assert_allclose(fragments.depth[mask], t[mask] * rays[mask, 2], rtol=1e-5)

    # Screen-linear interpolation of u (what a rasteriser without 1/z correction gives) is visibly off.
    linear = np.zeros_like(u)
    for index, face in enumerate(faces):
        tri = screen[face]
        e = edge_values(tri, x, y)
        weights = np.stack([e[1], e[2], e[0]], axis=-1) / e.sum(axis=0)[..., None]
        here = fragments.triangle == index
        linear[here] = weights[here] @ uv[face, 0]
    assert np.abs(linear[mask] - u[mask]).max() > 0.03


def test_project_uses_normalised_intrinsics() -> None:
    intrinsics = np.array([[2.0, 0.0, 0.5], [0.0, 3.0, 0.4], [0.0, 0.0, 1.0]])
    screen, depth = project(np.array([[0.2, -0.1, 2.0]]), intrinsics, 50, 100)
    np.testing.assert_allclose(screen, [[(2.0 * 0.1 + 0.5) * 100, (3.0 * -0.05 + 0.4) * 50]])
    np.testing.assert_allclose(depth, [2.0])


# --- interpolate ------------------------------------------------------------------------------------------------------


def test_interpolate_constant_attributes_and_barycentric_sums() -> None:
    rng = np.random.default_rng(3)
    screen = rng.uniform(-4, 28, size=(30, 2))
    depth = rng.uniform(1.0, 5.0, size=30)
    faces = rng.integers(0, 30, size=(25, 3))
    fragments = rasterize(screen, depth, faces, 24, 24)
    mask = fragments.mask
    assert 0 < mask.sum() < mask.size
    image = interpolate(fragments, faces, np.tile([[3.5, -2.0]], (30, 1)))
    assert image.dtype == np.float32 and image.shape == (24, 24, 2)
    np.testing.assert_allclose(image[mask], np.broadcast_to([3.5, -2.0], (mask.sum(), 2)), rtol=1e-5)
    assert (image[~mask] == 0).all()
    np.testing.assert_allclose(fragments.barycentric[mask].sum(axis=-1), 1.0, atol=1e-5)
    assert fragments.barycentric[mask].min() > -1e-5
    assert (fragments.barycentric[~mask] == 0).all()
    assert np.isinf(fragments.depth[~mask]).all() and (fragments.triangle[~mask] == -1).all()
    assert fragments.triangle.dtype == np.int32 and fragments.barycentric.dtype == np.float32
    assert fragments.depth.dtype == np.float32


# --- dropped and awkward triangles -----------------------------------------------------------------------------------


def test_triangles_behind_or_crossing_the_camera_are_dropped() -> None:
    intrinsics = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    points = np.array(
        [
            [-1.0, -1.0, -2.0], [1.0, -1.0, -2.0], [0.0, 1.0, -2.0],  # behind
            [-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, -0.5],  # crossing z = 0
            [-1.0, -1.0, 0.0], [1.0, -1.0, 2.0], [0.0, 1.0, 2.0],  # a vertex on the camera plane
        ]
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        screen, depth = project(points, intrinsics, 16, 16)
        fragments = rasterize(screen, depth, np.arange(9).reshape(3, 3), 16, 16)
    assert not fragments.mask.any()


def test_off_screen_and_huge_triangles() -> None:
    screen = np.array([[-50.0, -50.0], [-20.0, -50.0], [-50.0, -10.0], [-1e7, -1e7], [1e7, -1e7], [0.0, 1e7]])
    fragments = raster_one(screen, [0, 1, 2], 16, 12)
    assert not fragments.mask.any()
    fragments = raster_one(screen, [3, 4, 5], 16, 12)
    assert fragments.mask.all()
    np.testing.assert_allclose(fragments.barycentric.sum(axis=-1), 1.0, atol=1e-5)


def test_degenerate_and_non_finite_triangles_draw_nothing() -> None:
    screen = np.array([[1.0, 1.0], [8.0, 8.0], [15.0, 15.0], [4.0, 4.0], [np.nan, 3.0], [12.0, 2.0]])
    faces = np.array([[0, 1, 2], [0, 0, 5], [3, 3, 3], [0, 4, 5]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fragments = rasterize(screen, np.ones(6), faces, 16, 16)
    assert not fragments.mask.any()
    assert not np.isnan(fragments.barycentric).any() and not np.isnan(fragments.depth).any()


def test_out_of_range_vertex_indices_are_rejected() -> None:
    screen = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    for face in ([0, 1, 3], [-1, 1, 2]):
        with pytest.raises(ValueError, match="vertex indices"):
            rasterize(screen, np.ones(3), np.array([face]), 8, 8)


def test_empty_triangle_list() -> None:
    fragments = rasterize(np.zeros((0, 2)), np.zeros(0), np.zeros((0, 3), dtype=np.int64), 5, 7)
    assert fragments.triangle.shape == (5, 7) and not fragments.mask.any()
    assert interpolate(fragments, np.zeros((0, 3), dtype=np.int64), np.zeros((0, 4))).shape == (5, 7, 4)


# --- back-face culling -----------------------------------------------------------------------------------------------


def test_backface_culling_removes_exactly_the_reversed_triangles() -> None:
    xs, ys = np.meshgrid(np.linspace(0.3, 15.7, 6), np.linspace(0.2, 15.9, 5))
    screen = np.stack([xs, ys], axis=-1).reshape(-1, 2)
    faces = []
    for r in range(4):
        for c in range(5):
            a, b, d, e = r * 6 + c, r * 6 + c + 1, (r + 1) * 6 + c, (r + 1) * 6 + c + 1
            # Counter-clockwise as seen on screen (y down): a -> d -> e, then a -> e -> b.
            faces += [[a, d, e], [a, e, b]]
    faces = np.array(faces)
    reversed_ = np.arange(len(faces)) % 3 == 0
    faces[reversed_] = faces[reversed_][:, ::-1]
    depth = np.ones(len(screen))
    everything = rasterize(screen, depth, faces, 16, 16)
    culled = rasterize(screen, depth, faces, 16, 16, cull_backfaces=True)
    assert set(np.unique(culled.triangle[culled.mask])) == set(np.flatnonzero(~reversed_))
    assert set(np.unique(everything.triangle[everything.mask])) == set(range(len(faces)))
    kept = culled.mask
    np.testing.assert_array_equal(culled.triangle[kept], everything.triangle[kept])
    np.testing.assert_array_equal(kept, everything.mask & ~reversed_[everything.triangle])


def cube(pose: np.ndarray, centre: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A unit cube, faces counter-clockwise seen from outside (outward normals), rotated and moved."""
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    quads = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    faces = []
    for q in quads:
        normal = np.cross(corners[q[1]] - corners[q[0]], corners[q[2]] - corners[q[0]])
        q = q if normal @ corners[q].mean(axis=0) > 0 else q[::-1]
        faces += [[q[0], q[1], q[2]], [q[0], q[2], q[3]]]
    return corners @ pose.T + centre, np.array(faces)


def test_culling_keeps_faces_whose_outward_normal_faces_the_camera() -> None:
    angle_y, angle_x = 0.61, -0.37
    ry = np.array([[np.cos(angle_y), 0, np.sin(angle_y)], [0, 1, 0], [-np.sin(angle_y), 0, np.cos(angle_y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(angle_x), -np.sin(angle_x)], [0, np.sin(angle_x), np.cos(angle_x)]])
    points, faces = cube(rx @ ry, np.array([0.05, -0.03, 3.0]))
    intrinsics = np.array([[1.5, 0.0, 0.5], [0.0, 1.5, 0.5], [0.0, 0.0, 1.0]])
    screen, depth = project(points, intrinsics, 40, 40)
    visible = rasterize(screen, depth, faces, 40, 40)
    culled = rasterize(screen, depth, faces, 40, 40, cull_backfaces=True)
    # On a closed convex mesh the front faces are exactly the visible ones.
    np.testing.assert_array_equal(culled.triangle, visible.triangle)
    normals = np.cross(points[faces[:, 1]] - points[faces[:, 0]], points[faces[:, 2]] - points[faces[:, 0]])
    towards_camera = np.einsum("fc,fc->f", normals, points[faces[:, 0]]) < 0
    assert set(np.unique(culled.triangle[culled.mask])) == set(np.flatnonzero(towards_camera))
    # Inside out, culling keeps the far half instead.
    inside_out = rasterize(screen, depth, faces[:, ::-1], 40, 40, cull_backfaces=True)
    np.testing.assert_array_equal(inside_out.mask, visible.mask)
    assert (inside_out.depth[visible.mask] > visible.depth[visible.mask]).mean() > 0.95


# --- determinism -----------------------------------------------------------------------------------------------------


def soup(seed: int, count: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random overlapping triangles with distinct per-triangle depths (screen, depth, faces)."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0, 64, size=(count, 1, 2))
    screen = (centre + rng.normal(scale=6.0, size=(count, 3, 2))).reshape(-1, 2)
    depth = np.repeat(rng.permutation(count) + 1.0, 3) + rng.uniform(0, 0.5, size=count * 3)
    return screen, depth, np.arange(count * 3).reshape(count, 3)


def test_same_input_twice_gives_identical_output() -> None:
    screen, depth, faces = soup(0)
    first, second = rasterize(screen, depth, faces, 64, 64), rasterize(screen, depth, faces, 64, 64)
    for name in ("triangle", "barycentric", "depth"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))


def test_shuffled_triangle_order_gives_identical_output() -> None:
    screen, depth, faces = soup(1)
    order = np.random.default_rng(2).permutation(len(faces))
    reference = rasterize(screen, depth, faces, 64, 64)
    shuffled = rasterize(screen, depth, faces[order], 64, 64)
    assert reference.mask.mean() > 0.5
    np.testing.assert_array_equal(np.where(shuffled.mask, order[shuffled.triangle], -1), reference.triangle)
    np.testing.assert_array_equal(shuffled.barycentric, reference.barycentric)
    np.testing.assert_array_equal(shuffled.depth, reference.depth)


def test_output_does_not_depend_on_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    screen, depth, faces = soup(3)
    faces = np.concatenate([faces, faces[::7]])  # exact depth ties, resolved across chunks
    reference = rasterize(screen, depth, faces, 64, 64)
    monkeypatch.setattr(rasterizer, "_CHUNK_PIXELS", 500)
    assert len(rasterizer._chunks(np.full(len(faces), 100))) > 10
    chunked = rasterize(screen, depth, faces, 64, 64)
    for name in ("triangle", "barycentric", "depth"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(reference, name))


# --- downsample ------------------------------------------------------------------------------------------------------


def test_downsample_is_an_exact_box_filter() -> None:
    image = np.array(
        [
            [1.0, 3.0, 0.0, 0.0],
            [5.0, 7.0, 0.0, 4.0],
            [2.0, 2.0, -1.0, 1.0],
            [2.0, 2.0, 8.0, 0.0],
        ]
    )
    expected = np.array([[4.0, 1.0], [2.0, 2.0]])
    np.testing.assert_array_equal(downsample(image, 2), expected)
    stacked = np.stack([image, 2 * image], axis=-1).astype(np.float32)
    result = downsample(stacked, 2)
    assert result.dtype == np.float32 and result.shape == (2, 2, 2)
    np.testing.assert_array_equal(result, np.stack([expected, 2 * expected], axis=-1))
    np.testing.assert_array_equal(downsample(image, 1), image)
    with pytest.raises(ValueError, match="divisible"):
        downsample(image, 3)
