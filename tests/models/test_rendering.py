"""Tri-plane volume rendering against the EG3D conventions (shared/docs/eg3d-conventions.md §3-§9).

Every expectation is analytic or a hand-written float64 re-derivation of the documented
formulas; the renderer itself is only used as the thing under test.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from export3d_cli.geometry.camera import FFHQ_FOCAL, ffhq_intrinsics, look_at_cam2world
from export3d_cli.geometry.rays import pixel_rays
from export3d_cli.models.rendering import RenderOutput, TriplaneDecoder, render_triplanes, sample_triplanes
from export3d_cli.models.rendering import renderer as renderer_module
from export3d_cli.models.rendering.depth_sampler import (
    inverse_cdf_samples,
    smoothed_importance_weights,
    stratified_depths,
)
from export3d_cli.models.rendering.ray_marcher import march_rays, march_unsorted
from export3d_cli.models.rendering.reference import render_triplanes_reference
from export3d_cli.models.rendering.triplane_sampler import sample_triplanes_grid_sample

C = 32
RAY_START, RAY_END = 2.25, 3.3


# --------------------------------------------------------------------------- helpers


def softplus(x: float) -> float:
    return math.log1p(math.exp(x)) if x < 30 else x


def inverse_softplus(y: float) -> float:
    return math.log(math.expm1(y))


def raw_sigma_for_density(rho: float) -> float:
    """Raw logit s with softplus(s - 1) == rho (the marcher's -1 shift, §7)."""
    return 1.0 + inverse_softplus(rho)


def constant_decoder(sigma_raw: float, color_logit: float | torch.Tensor = 0.0) -> TriplaneDecoder:
    """Decoder whose raw sigma is ``sigma_raw`` and whose 32 features are constant everywhere."""
    decoder = TriplaneDecoder()
    with torch.no_grad():
        for layer in (decoder.fc0, decoder.fc1):
            layer.weight.zero_()
            layer.bias.zero_()
        decoder.fc1.bias[0] = sigma_raw
        decoder.fc1.bias[1:] = torch.as_tensor(color_logit, dtype=torch.float32)
    return decoder


def decoded_color(color_logit: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(color_logit) * 1.002 - 0.001


def frontal_cameras(n: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    cam2world = look_at_cam2world(0.0, 0.0).expand(n, 4, 4).contiguous()
    return cam2world, ffhq_intrinsics().expand(n, 3, 3).contiguous()


def zero_planes(n: int = 1, size: int = 8) -> torch.Tensor:
    return torch.zeros(n, 3, C, size, size)


# --------------------------------------------------------------------------- 1. empty space


@pytest.mark.parametrize("importance", [0, 16])
def test_zero_density_renders_empty(importance: int) -> None:
    cam2world, intrinsics = frontal_cameras(2)
    out = render_triplanes(
        zero_planes(2),
        constant_decoder(-100.0, 3.0),
        cam2world,
        intrinsics,
        resolution=8,
        samples=16,
        importance_samples=importance,
    )
    assert out.features.shape == (2, C, 8, 8)
    assert out.depth.shape == (2, 1, 8, 8)
    assert out.opacity.shape == (2, 1, 8, 8)
    # rho = softplus(-101) ~ 1e-44 -> alpha = 1 - exp(-tiny) == 0 exactly in float32.
    assert torch.equal(out.opacity, torch.zeros_like(out.opacity))
    # F = 0 -> 2F - 1 = -1 on every channel, whatever the (constant) colour is.
    assert torch.equal(out.features, torch.full_like(out.features, -1.0))
    # D = 0/0 = NaN -> +inf -> clamped to the largest depth of the call: the last coarse sample,
    # linspace(ray_start, ray_end, S)[-1] (fine samples never go past e_{S-3}).
    t_max = torch.linspace(RAY_START, RAY_END, 16)[-1]
    assert torch.equal(out.depth, torch.full_like(out.depth, t_max.item()))


# --------------------------------------------------------------------------- 2. constant density


@pytest.mark.parametrize("rho", [0.3, 1.0, 2.5])
@pytest.mark.parametrize("samples,importance", [(24, 0), (17, 0), (24, 24)])
def test_constant_density_opacity_telescopes(rho: float, samples: int, importance: int) -> None:
    # With one density everywhere sum_k alpha_k prod_{j<k}(1 - alpha_j) = 1 - exp(-rho * (t_max - t_min))
    # exactly, whatever the sample positions (up to the 1e-10 terms), so coarse-only and merged
    # coarse+fine marches must both give the closed form over [ray_start, ray_end].
    logits = torch.linspace(-2.0, 2.0, C)
    cam2world = torch.stack([look_at_cam2world(0.0, 0.0), look_at_cam2world(0.4, -0.2)])
    intrinsics = ffhq_intrinsics().expand(2, 3, 3)
    out = render_triplanes(
        zero_planes(2),
        constant_decoder(raw_sigma_for_density(rho), logits),
        cam2world,
        intrinsics,
        resolution=8,
        samples=samples,
        importance_samples=importance,
    )
    span = float(torch.linspace(RAY_START, RAY_END, samples)[-1]) - RAY_START
    expected_w = 1.0 - math.exp(-rho * span)
    torch.testing.assert_close(out.opacity, torch.full_like(out.opacity, expected_w), rtol=0, atol=1e-5)
    # Features: F = W * c (c constant), then 2F - 1.
    expected_f = (2 * out.opacity * decoded_color(logits).reshape(1, C, 1, 1) - 1).expand_as(out.features)
    torch.testing.assert_close(out.features, expected_f, rtol=0, atol=1e-5)
    # Depth is a weighted mean of interval mid-points: inside the range, and in the front half
    # (exponential fall-off of the weights).
    assert torch.all(out.depth >= RAY_START) and torch.all(out.depth <= RAY_END)
    assert torch.all(out.depth < 0.5 * (RAY_START + RAY_END))


def test_constant_density_depth_matches_hand_formula_coarse_only() -> None:
    # Coarse-only, uniform spacing: D = sum_k w_k tbar_k / sum_k w_k with w_k = a (1 - a)^k
    # (1e-10 term neglected), tbar_k = t_0 + (k + 1/2) delta.
    rho, samples = 1.7, 20
    cam2world, intrinsics = frontal_cameras(1)
    out = render_triplanes(
        zero_planes(1),
        constant_decoder(raw_sigma_for_density(rho)),
        cam2world,
        intrinsics,
        resolution=4,
        samples=samples,
        importance_samples=0,
    )
    delta = (RAY_END - RAY_START) / (samples - 1)
    a = 1 - math.exp(-rho * delta)
    w = [a * (1 - a) ** k for k in range(samples - 1)]
    tbar = [RAY_START + (k + 0.5) * delta for k in range(samples - 1)]
    expected = sum(wi * ti for wi, ti in zip(w, tbar, strict=True)) / sum(w)
    torch.testing.assert_close(out.depth, torch.full_like(out.depth, expected), rtol=0, atol=2e-5)


# --------------------------------------------------------------------------- 3. a dense slab


def slab_decoder(rho_inside: float, color_logits: torch.Tensor) -> TriplaneDecoder:
    """Density rho_inside where feature channel 0 is ~1 (inside the cube), zero where it is 0.

    sigma = A * (softplus(k f0 - k/2) - softplus(k f0 - k/2 - 50)) - 100 ~ A * clamp(k (f0 - 1/2), 0, 50) - 100,
    a sharp saturating step at f0 = 1/2 (the cube face, where the bilinear fade is at 1/2).
    """
    k, B = 1000.0, -100.0
    s_in = raw_sigma_for_density(rho_inside)
    A = (s_in - B) / 50.0
    decoder = constant_decoder(B, color_logits)
    with torch.no_grad():
        decoder.fc0.weight[0, 0] = k
        decoder.fc0.weight[1, 0] = k
        decoder.fc0.bias[0] = -k / 2
        decoder.fc0.bias[1] = -k / 2 - 50.0
        decoder.fc1.weight[0, 0] = A
        decoder.fc1.weight[0, 1] = -A
    return decoder


def slab_planes(size: int = 32) -> torch.Tensor:
    # Planes 1 and 2 contain z in both layouts; plane 0 (x, y) is zero. Inside the cube the mean
    # feature is (0 + 1.5 + 1.5) / 3 = 1, outside in z it is exactly 0.
    planes = torch.zeros(1, 3, C, size, size)
    planes[:, 1:, 0] = 1.5
    return planes


def render_slab(rho: float, logits: torch.Tensor, resolution: int, plane_axes: str):
    """Frontal render of the slab scene: rays over [2.0, 3.5], 48 + 48 samples."""
    cam2world, intrinsics = frontal_cameras(1)
    out = render_triplanes(
        slab_planes(),
        slab_decoder(rho, logits),
        cam2world,
        intrinsics,
        resolution=resolution,
        samples=48,
        importance_samples=48,
        ray_start=2.0,
        ray_end=3.5,
        plane_axes=plane_axes,
    )
    return out, cam2world, intrinsics


@pytest.mark.parametrize("plane_axes", ["orthogonal", "eg3d"])
def test_slab_opacity_matches_beer_lambert(plane_axes: str) -> None:
    rho = 1.0
    logits = torch.linspace(-1.0, 1.5, C)
    ray_start, ray_end, samples = 2.0, 3.5, 48
    R = 9
    out, cam2world, intrinsics = render_slab(rho, logits, R, plane_axes)
    _, directions = pixel_rays(cam2world, intrinsics, R)
    # Camera at (0, 0, 2.7) looking along -z; every pixel's ray crosses the z = +-0.5 faces inside
    # |x|, |y| < 0.5, so its path length in the cube is 1 / |d_z|.
    length = (1.0 / directions[0, :, 2].abs()).reshape(1, 1, R, R).double()
    upper = 1 - torch.exp(-rho * length)
    coarse_step = (ray_end - ray_start) / (samples - 1)
    # Only the two intervals straddling the faces are lost (their averaged raw sigma is ~ -49).
    lower = 1 - torch.exp(-rho * (length - 2 * coarse_step))
    w = out.opacity.double()
    assert torch.all(w <= upper + 1e-5), (w - upper).max()
    assert torch.all(w >= lower - 1e-5), (lower - w).max()
    # i.e. a relative error of at most ~ 2 * step * rho * exp(-rho L) / (1 - exp(-rho L)) ~ 3.7 %.
    torch.testing.assert_close(w, upper, rtol=0.04, atol=0)
    centre = out.opacity[0, 0, R // 2, R // 2].item()
    assert abs(centre - (1 - math.exp(-rho * 1.0))) < 0.025
    # Constant colour c: F = 2 W c - 1 on every channel.
    expected_f = 2 * out.opacity * decoded_color(logits).reshape(1, C, 1, 1) - 1
    torch.testing.assert_close(out.features, expected_f, rtol=0, atol=1e-5)


def test_slab_opaque_depth_and_colour() -> None:
    rho = 40.0
    logits = torch.linspace(-3.0, 3.0, C)
    R = 9
    out, cam2world, intrinsics = render_slab(rho, logits, R, "orthogonal")
    _, directions = pixel_rays(cam2world, intrinsics, R)
    inv_dz = (1.0 / directions[0, :, 2].abs()).reshape(1, 1, R, R)
    # Fully opaque: colour = 2c - 1 (the eg3d-style check), opacity ~ 1.
    torch.testing.assert_close(out.opacity, torch.ones_like(out.opacity), rtol=0, atol=1e-6)
    expected_f = (2 * decoded_color(logits) - 1).reshape(1, C, 1, 1).expand_as(out.features)
    torch.testing.assert_close(out.features, expected_f, rtol=0, atol=1e-5)
    # The slab starts at z = 0.5, i.e. at Euclidean depth (2.7 - 0.5) / |d_z|; the expected depth of
    # an exponential with rate rho is 1/rho behind the face.
    entry = 2.2 * inv_dz
    assert torch.all(out.depth >= entry - 1e-4)
    torch.testing.assert_close(out.depth, entry + 1.0 / rho, rtol=0, atol=0.012)
    assert abs(out.depth[0, 0, R // 2, R // 2].item() - (2.2 + 1 / rho)) < 0.012


@pytest.mark.parametrize(
    "plane,region,plane_axes,opaque",
    [
        # plane 0 = (x, y) in both layouts: texels with gx > 0 (columns >= W/2) and gy > 0 (rows >= H/2)
        # hold the world quadrant x > 0, y > 0 -> image right (j >= R/2) and top (i < R/2).
        (0, "quadrant", "orthogonal", "top-right"),
        (0, "quadrant", "eg3d", "top-right"),
        # plane 1, texels with gx > 0: orthogonal gx = y -> top half; eg3d gx = x -> right half.
        (1, "columns", "orthogonal", "top"),
        (1, "columns", "eg3d", "right"),
    ],
)
def test_render_image_layout_and_orientation(plane: int, region: str, plane_axes: str, opaque: str) -> None:
    S = 32
    planes = torch.zeros(1, 3, C, S, S)
    if region == "quadrant":
        planes[0, plane, 0, S // 2 :, S // 2 :] = 3.0
    else:
        planes[0, plane, 0, :, S // 2 :] = 3.0
    logits = torch.linspace(-1.0, 1.0, C)
    cam2world, intrinsics = frontal_cameras(1)
    R = 8
    out = render_triplanes(
        planes,
        slab_decoder(40.0, logits),
        cam2world,
        intrinsics,
        resolution=R,
        samples=16,
        importance_samples=16,
        plane_axes=plane_axes,
    )
    i, j = torch.meshgrid(torch.arange(R), torch.arange(R), indexing="ij")
    mask = {"top-right": (i < R // 2) & (j >= R // 2), "top": i < R // 2, "right": j >= R // 2}[opaque]
    w = out.opacity[0, 0]
    assert torch.all(w[mask] > 0.999), w
    assert torch.all(w[~mask] == 0), w
    assert torch.all(out.features[0, :, ~mask] == -1)
    expected = 2 * decoded_color(logits) - 1
    torch.testing.assert_close(
        out.features[0, :, mask], expected[:, None].expand(C, int(mask.sum())), atol=1e-3, rtol=0
    )


# --------------------------------------------------------------------------- 4. pixel centres


@pytest.mark.parametrize("res", [8, 9])
@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (0.5, -0.3)])
def test_pixel_ray_directions(res: int, yaw: float, pitch: float) -> None:
    R = res
    cam2world = look_at_cam2world(yaw, pitch).unsqueeze(0)
    intrinsics = ffhq_intrinsics().unsqueeze(0)
    origins, directions = pixel_rays(cam2world, intrinsics, R)
    assert origins.shape == directions.shape == (1, R * R, 3)
    torch.testing.assert_close(origins[0], cam2world[0, :3, 3].expand(R * R, 3), rtol=0, atol=0)
    rot = cam2world[0, :3, :3].double()
    i, j = torch.meshgrid(torch.arange(R, dtype=torch.float64), torch.arange(R, dtype=torch.float64), indexing="ij")
    cam = torch.stack([((j + 0.5) / R - 0.5) / FFHQ_FOCAL, ((i + 0.5) / R - 0.5) / FFHQ_FOCAL, torch.ones_like(i)], -1)
    expected = torch.nn.functional.normalize(cam.reshape(-1, 3) @ rot.T, dim=-1)  # ray m = i*R + j
    torch.testing.assert_close(directions[0].double(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(1, R * R), rtol=0, atol=1e-6)
    # The image centre is the optical axis (= column 2 of cam2world).
    grid = directions[0].reshape(R, R, 3).double()
    if R % 2:
        centre = grid[R // 2, R // 2]
    else:
        centre = torch.nn.functional.normalize(
            grid[R // 2 - 1 : R // 2 + 1, R // 2 - 1 : R // 2 + 1].sum((0, 1)), dim=0
        )
    torch.testing.assert_close(centre, rot[:, 2], rtol=0, atol=1e-6)


def test_pixel_ray_orientation_frontal() -> None:
    # World +x is at the image right (increasing column), world +y at the image top (row 0).
    cam2world, intrinsics = frontal_cameras(1)
    R = 8
    d = pixel_rays(cam2world, intrinsics, R)[1][0].reshape(R, R, 3)
    assert torch.all(d[:, -1, 0] > 0) and torch.all(d[:, 0, 0] < 0)
    assert torch.all(d[0, :, 1] > 0) and torch.all(d[-1, :, 1] < 0)
    assert torch.all(d[..., 2] < 0)


def test_pixel_rays_general_intrinsics_with_skew() -> None:
    fx, fy, cx, cy, s = 3.1, 2.3, 0.45, 0.58, 0.2
    intrinsics = torch.tensor([[[fx, s, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]])
    cam2world = look_at_cam2world(-0.3, 0.2).unsqueeze(0)
    R = 5
    _, directions = pixel_rays(cam2world, intrinsics, R)
    rot = cam2world[0, :3, :3].double()
    expected = []
    for i in range(R):
        for j in range(R):
            u, v = (j + 0.5) / R, (i + 0.5) / R
            x = (u - cx + cy * s / fy - s * v / fy) / fx
            y = (v - cy) / fy
            expected.append(rot @ torch.tensor([x, y, 1.0], dtype=torch.float64))
    expected_t = torch.nn.functional.normalize(torch.stack(expected), dim=-1)
    torch.testing.assert_close(directions[0].double(), expected_t, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- 5. tri-plane lookup

TABLE = {"orthogonal": ((0, 1), (1, 2), (2, 0)), "eg3d": ((0, 1), (0, 2), (2, 0))}  # conventions §5 + module doc


def bilinear_reference(plane: np.ndarray, gx: float, gy: float) -> np.ndarray:
    """grid_sample(bilinear, zeros, align_corners=False) by hand. plane [C, H, W]."""
    _, H, W = plane.shape
    px, py = ((gx + 1) * W - 1) / 2, ((gy + 1) * H - 1) / 2
    x0, y0 = math.floor(px), math.floor(py)
    fx, fy = px - x0, py - y0
    out = np.zeros(plane.shape[0])
    for xi, wx in ((x0, 1 - fx), (x0 + 1, fx)):
        for yi, wy in ((y0, 1 - fy), (y0 + 1, fy)):
            if 0 <= xi < W and 0 <= yi < H:
                out += wx * wy * plane[:, yi, xi]
    return out


def triplane_reference(planes: np.ndarray, point: np.ndarray, layout: str, box_warp: float) -> np.ndarray:
    g = (2.0 / box_warp) * point
    return sum(bilinear_reference(planes[p], g[a], g[b]) for p, (a, b) in enumerate(TABLE[layout])) / 3


def test_plane_layouts_differ_on_plane_one() -> None:
    H, W = 6, 10
    planes = torch.zeros(1, 3, 2, H, W)
    planes[0, 1, 0] = torch.arange(W, dtype=torch.float32).expand(H, W)  # ramp along columns (gx)
    planes[0, 1, 1] = torch.arange(H, dtype=torch.float32).unsqueeze(1).expand(H, W)  # ramp along rows (gy)
    x, y, z = 0.13, -0.21, 0.3
    point = torch.tensor([[[x, y, z]]])
    ortho = sample_triplanes(planes, point, "orthogonal", 1.0)[0, 0]
    eg3d = sample_triplanes(planes, point, "eg3d", 1.0)[0, 0]

    def col(c: float) -> float:  # continuous texel coordinate along W (linear ramp: exact)
        return ((2 * c + 1) * W - 1) / 2

    def row(c: float) -> float:
        return ((2 * c + 1) * H - 1) / 2

    # orthogonal plane 1 = (y, z): gx = y indexes W, gy = z indexes H; eg3d plane 1 = (x, z).
    torch.testing.assert_close(ortho, torch.tensor([col(y), row(z)]) / 3, rtol=0, atol=1e-5)
    torch.testing.assert_close(eg3d, torch.tensor([col(x), row(z)]) / 3, rtol=0, atol=1e-5)
    assert not torch.allclose(ortho, eg3d)
    # Moving along y changes the orthogonal lookup but not the eg3d one (y never reaches plane 1 there).
    moved = torch.tensor([[[x, y + 0.1, z]]])
    assert torch.allclose(sample_triplanes(planes, moved, "eg3d", 1.0)[0, 0], eg3d, atol=1e-6)
    torch.testing.assert_close(
        sample_triplanes(planes, moved, "orthogonal", 1.0)[0, 0],
        torch.tensor([col(y + 0.1), row(z)]) / 3,
        rtol=0,
        atol=1e-5,
    )


@pytest.mark.parametrize("plane_axes", ["orthogonal", "eg3d"])
def test_each_plane_reads_documented_coordinates(plane_axes: str) -> None:
    # Plane p holds value gx_texel + 100 * gy_texel, so the lookup reveals which coordinates it used.
    H, W = 8, 12
    col = torch.arange(W, dtype=torch.float32).expand(H, W)
    row = torch.arange(H, dtype=torch.float32).unsqueeze(1).expand(H, W)
    point = torch.tensor([0.11, -0.17, 0.23])
    for p, (a, b) in enumerate(TABLE[plane_axes]):
        planes = torch.zeros(1, 3, 1, H, W)
        planes[0, p, 0] = col + 100 * row
        got = sample_triplanes(planes, point.reshape(1, 1, 3), plane_axes, 1.0)[0, 0, 0].item()
        ga, gb = 2 * point[a].item(), 2 * point[b].item()
        expected = (((ga + 1) * W - 1) / 2 + 100 * ((gb + 1) * H - 1) / 2) / 3
        assert got == pytest.approx(expected, abs=1e-4), (plane_axes, p)


@pytest.mark.parametrize("plane_axes", ["orthogonal", "eg3d"])
@pytest.mark.parametrize("box_warp", [1.0, 1.6])
def test_sample_triplanes_matches_hand_bilinear(plane_axes: str, box_warp: float) -> None:
    gen = torch.Generator().manual_seed(0)
    N, Cp, H, W = 2, 3, 5, 7
    planes = torch.randn(N, 3, Cp, H, W, generator=gen)
    half = box_warp / 2
    points = (torch.rand(N, 40, 3, generator=gen) * 2 - 1) * half * 1.2
    # Edge cases: exactly on the faces (fade at 1/2), inside the half-texel fade, a corner.
    extra = torch.tensor(
        [[half, 0.1, -0.2], [-half, half, 0.0], [0.05, 0.0, half * (1 + 0.5 / W)], [half, half, half]]
    ).expand(N, 4, 3)
    points = torch.cat([points, extra], 1)
    got = sample_triplanes(planes, points, plane_axes, box_warp)
    assert got.shape == (N, points.shape[1], Cp)
    p_np, x_np = planes.double().numpy(), points.double().numpy()
    expected = np.stack(
        [
            [triplane_reference(p_np[n], x_np[n, k], plane_axes, box_warp) for k in range(x_np.shape[1])]
            for n in range(N)
        ]
    )
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=0, atol=1e-5)


def test_sample_triplanes_exactly_zero_outside_cube() -> None:
    H = W = 8
    planes = torch.randn(1, 3, 4, H, W, generator=torch.Generator().manual_seed(1)) + 5.0
    beyond = 0.5 * (1 + 1.0 / W) + 1e-4  # past the outer half texel
    inside = 0.2
    # orthogonal: each coordinate lives on two planes, so two coordinates outside zero all planes;
    # eg3d: x is on all three planes, so x outside alone gives exactly 0 (and z alone does not).
    cases = {
        "orthogonal": (
            [[beyond, -beyond, inside], [inside, beyond, beyond], [beyond, beyond, beyond]],
            [[beyond, 0, 0]],
        ),
        "eg3d": ([[beyond, inside, -inside], [-beyond, inside, inside], [beyond, beyond, beyond]], [[0, 0, beyond]]),
    }
    for layout, (zero_pts, nonzero_pts) in cases.items():
        out = sample_triplanes(planes, torch.tensor([zero_pts]), layout, 1.0)
        assert torch.equal(out, torch.zeros_like(out)), layout
        out = sample_triplanes(planes, torch.tensor([nonzero_pts], dtype=torch.float32), layout, 1.0)
        assert torch.all(out.abs() > 0.5), layout
    # On a face the fade is exactly half of the edge texel on that plane.
    one = torch.zeros(1, 3, 1, H, W)
    one[0, 0] = 1.0  # plane 0 = (x, y) in both layouts
    out = sample_triplanes(one, torch.tensor([[[0.5, 0.0, 0.0], [0.5, 0.5, 0.0]]]), "orthogonal", 1.0)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.5 / 3, 0.25 / 3]), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- 6. ray marcher by hand


def march_reference(sigma: list[float], feats: list[list[float]], t: list[float]) -> tuple[list[float], float, float]:
    """§7 with python floats: returns (F before 2F-1, D before clamp, W)."""
    K = len(t)
    T, W, F, Dn = 1.0, 0.0, [0.0] * len(feats[0]), 0.0
    for k in range(K - 1):
        delta = t[k + 1] - t[k]
        rho = softplus((sigma[k] + sigma[k + 1]) / 2 - 1)
        alpha = 1 - math.exp(-rho * delta)
        w = alpha * T
        T *= 1 - alpha + 1e-10
        W += w
        F = [f + w * (a + b) / 2 for f, a, b in zip(F, feats[k], feats[k + 1], strict=True)]
        Dn += w * (t[k] + t[k + 1]) / 2
    return F, (Dn / W if W > 0 else math.nan), W


def test_march_rays_hand_example() -> None:
    sigma = [0.5, 2.0, -0.7]
    feats = [[0.1, 0.9], [0.6, 0.2], [0.3, 0.4]]
    t = [2.3, 2.5, 2.9]
    # by hand, interval 0: sbar 1.25, rho = softplus(0.25), alpha0 = 1 - exp(-0.2 rho)
    rho0 = math.log1p(math.exp(0.25))
    rho1 = math.log1p(math.exp(0.65 - 1))
    a0, a1 = 1 - math.exp(-rho0 * 0.2), 1 - math.exp(-rho1 * 0.4)
    w0, w1 = a0, a1 * (1 - a0 + 1e-10)
    W = w0 + w1
    F = [w0 * 0.35 + w1 * 0.45, w0 * 0.55 + w1 * 0.3]
    D = (w0 * 2.4 + w1 * 2.7) / W
    ref_F, ref_D, ref_W = march_reference(sigma, feats, t)
    assert ref_F == pytest.approx(F, abs=1e-12) and ref_D == pytest.approx(D) and ref_W == pytest.approx(W)

    res = march_rays(
        torch.tensor(feats).reshape(1, 1, 3, 2),
        torch.tensor(sigma).reshape(1, 1, 3, 1),
        torch.tensor(t).reshape(1, 1, 3, 1),
    )
    assert res.weights.shape == (1, 1, 2, 1)
    torch.testing.assert_close(
        res.weights.flatten().double(), torch.tensor([w0, w1], dtype=torch.float64), rtol=0, atol=1e-6
    )
    torch.testing.assert_close(
        res.features.flatten().double(), 2 * torch.tensor(F, dtype=torch.float64) - 1, rtol=0, atol=1e-6
    )
    assert res.depth.item() == pytest.approx(D, abs=1e-6)


def test_march_rays_random_against_reference_and_global_clamp() -> None:
    gen = torch.Generator().manual_seed(3)
    N, M, K, Cf = 2, 3, 7, 4
    t = torch.sort(torch.rand(N, M, K, 1, generator=gen) * 3 + 1, dim=2).values
    sigma = torch.randn(N, M, K, 1, generator=gen) * 3
    feats = torch.rand(N, M, K, Cf, generator=gen)
    # Ray (0, 0) is empty (raw sigma -100 -> alpha exactly 0): its depth is NaN -> inf -> clamped to
    # the max over the WHOLE tensor, set to 9.0 on another batch element's ray.
    sigma[0, 0] = -100.0
    t[1, 2, -1] = 9.0
    res = march_rays(feats, sigma, t)
    for n in range(N):
        for m in range(M):
            F, D, W = march_reference(sigma[n, m, :, 0].tolist(), feats[n, m].tolist(), t[n, m, :, 0].tolist())
            D = min(max(9.0 if math.isnan(D) else D, t.min().item()), 9.0)
            assert res.weights[n, m].sum().item() == pytest.approx(W, abs=1e-6)
            np.testing.assert_allclose(res.features[n, m].double().numpy(), 2 * np.array(F) - 1, atol=1e-6)
            assert res.depth[n, m, 0].item() == pytest.approx(D, abs=2e-6)
    assert res.depth[0, 0, 0].item() == 9.0  # not the ray's own max
    assert t[0, 0, -1, 0].item() < 9.0


def test_march_rays_clamp_is_global_not_per_ray() -> None:
    # Two empty rays with depth ranges [1, 3] and [4, 6]: both depths become 6 (global max).
    t = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]]).unsqueeze(-1)
    sigma = torch.full_like(t, -100.0)
    res = march_rays(torch.zeros(1, 2, 3, 1), sigma, t)
    assert res.depth.flatten().tolist() == [6.0, 6.0]
    # An opaque ray keeps its own depth: it lies inside the global range.
    sigma[0, 0] = 50.0
    res = march_rays(torch.zeros(1, 2, 3, 1), sigma, t)
    assert res.depth[0, 0, 0].item() == pytest.approx(1.5, abs=1e-5)
    assert res.depth[0, 1, 0].item() == 6.0


# --------------------------------------------------------------------------- 7. importance sampling


def smoothed_reference(w: list[float]) -> list[float]:
    S = len(w) + 1
    m = [w[0]] + [max(w[k - 1], w[k]) for k in range(1, S - 1)] + [w[S - 2]]
    a = [(m[k] + m[k + 1]) / 2 + 0.01 for k in range(S - 1)]
    return a[1:-1]


def inverse_cdf_reference(e: list[float], p: list[float], u: list[float]) -> list[float]:
    n = len(p)  # S - 3 intervals on edges e_0 .. e_{S-3}
    pp = [x + 1e-5 for x in p]
    total = sum(pp)
    cdf = [0.0]
    for x in pp:
        cdf.append(cdf[-1] + x / total)
    out = []
    for ui in u:
        idx = sum(1 for c in cdf if c <= ui)
        lo, hi = max(idx - 1, 0), min(idx, n)
        den = cdf[hi] - cdf[lo]
        den = 1.0 if den < 1e-5 else den
        out.append(e[lo] + (ui - cdf[lo]) / den * (e[hi] - e[lo]))
    return out


def test_smoothed_importance_weights_hand_example() -> None:
    w = [0.1, 0.5, 0.2, 0.0, 0.3]  # S - 1 = 5 weights, S = 6
    # m = [.1, .5, .5, .2, .3, .3], a = [.3, .5, .35, .25, .3] + .01, drop ends
    expected = [0.51, 0.36, 0.26]
    assert smoothed_reference(w) == pytest.approx(expected)
    got = smoothed_importance_weights(torch.tensor([w, w[::-1]]))
    assert got.shape == (2, 3)
    torch.testing.assert_close(got[0], torch.tensor(expected), rtol=0, atol=1e-7)
    torch.testing.assert_close(got[1], torch.tensor(smoothed_reference(w[::-1])), rtol=0, atol=1e-7)
    rand = torch.rand(4, 11, generator=torch.Generator().manual_seed(5))
    ref = torch.tensor([smoothed_reference(r) for r in rand.tolist()])
    torch.testing.assert_close(smoothed_importance_weights(rand), ref, rtol=0, atol=1e-6)


def test_inverse_cdf_uniform_weights_evenly_spaced() -> None:
    S, S2 = 24, 17
    t = torch.linspace(RAY_START, RAY_END, S)
    e = 0.5 * (t[:-1] + t[1:])  # S - 1 edges
    bins = torch.stack([e, e * 2.0])
    bins[:, -1] = 1e6  # e_{S-2} is never used
    fine = inverse_cdf_samples(bins, torch.ones(2, S - 3), S2, stochastic=False)
    assert fine.shape == (2, S2)
    for r in range(2):
        lo, hi = bins[r, 0].item(), bins[r, S - 3].item()
        expected = torch.linspace(0, 1, S2, dtype=torch.float64) * (hi - lo) + lo
        torch.testing.assert_close(fine[r].double(), expected, rtol=0, atol=2e-5)
        assert fine[r, 0].item() == bins[r, 0].item()  # first fine sample is exactly e_0
        assert fine[r].max().item() <= hi + 1e-5


def test_inverse_cdf_hand_example() -> None:
    e = [0.0, 1.0, 2.0, 3.0, 100.0]  # the last edge must never be reached
    p = [1.0, 0.0, 3.0]
    got = inverse_cdf_samples(torch.tensor([e]), torch.tensor([p]), 5, stochastic=False)[0]
    # pdf ~ [.25, 0, .75]: u = 0, .25, .5, .75, 1 -> 0, ~1, 2 + 1/3, 2 + 2/3, 3
    expected = inverse_cdf_reference(e, p, [0.0, 0.25, 0.5, 0.75, 1.0])
    assert expected == pytest.approx([0.0, 1.0, 2 + 1 / 3, 2 + 2 / 3, 3.0], abs=1e-4)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=0, atol=1e-5)
    rand_p = torch.rand(3, 9, generator=torch.Generator().manual_seed(2))
    edges = torch.cumsum(torch.rand(3, 11, generator=torch.Generator().manual_seed(4)), -1)
    got = inverse_cdf_samples(edges, rand_p, 13, stochastic=False)
    u = torch.linspace(0, 1, 13).tolist()
    for r in range(3):
        np.testing.assert_allclose(
            got[r].double().numpy(), inverse_cdf_reference(edges[r].tolist(), rand_p[r].tolist(), u), atol=2e-5
        )
        assert got[r, 0].item() == edges[r, 0].item()


def test_inverse_cdf_stochastic_within_edges_and_seeded() -> None:
    e = torch.cumsum(torch.rand(4, 10, generator=torch.Generator().manual_seed(7)), -1)
    p = torch.rand(4, 8, generator=torch.Generator().manual_seed(8))
    a = inverse_cdf_samples(e, p, 32, stochastic=True, generator=torch.Generator().manual_seed(9))
    b = inverse_cdf_samples(e, p, 32, stochastic=True, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert torch.all(a >= e[:, :1]) and torch.all(a <= e[:, 8:9] + 1e-6)


# --------------------------------------------------------------------------- 8. determinism


def test_stratified_depths() -> None:
    base = torch.linspace(RAY_START, RAY_END, 48)
    det = stratified_depths(2, 5, 48, RAY_START, RAY_END, stochastic=False)
    assert det.shape == (2, 5, 48, 1)
    assert torch.equal(det, base.reshape(1, 1, 48, 1).expand(2, 5, 48, 1))
    assert det[0, 0, 1, 0].item() - RAY_START == pytest.approx(0.0223404, abs=1e-6)
    step = (RAY_END - RAY_START) / 47
    jit = stratified_depths(2, 5, 48, RAY_START, RAY_END, stochastic=True, generator=torch.Generator().manual_seed(0))
    offset = jit - base.reshape(1, 1, 48, 1)
    assert torch.all(offset >= 0) and torch.all(offset < step + 1e-6)
    assert offset.std() > 0.2 * step  # really jittered, independently per sample
    assert not torch.equal(jit[0], jit[1])


def render_random(stochastic: bool = False, seed: int | None = None, n: int = 2, res: int = 8) -> RenderOutput:
    torch.manual_seed(11)
    planes = torch.randn(n, 3, C, 16, 16)
    decoder = TriplaneDecoder()
    cam2world = torch.stack([look_at_cam2world(0.1 * k, -0.05 * k) for k in range(n)])
    intrinsics = ffhq_intrinsics().expand(n, 3, 3)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    return render_triplanes(
        planes,
        decoder,
        cam2world,
        intrinsics,
        resolution=res,
        samples=16,
        importance_samples=16,
        stochastic=stochastic,
        generator=gen,
    )


def test_deterministic_mode_is_bitwise_reproducible() -> None:
    a, b = render_random(), render_random()
    for x, y in ((a.features, b.features), (a.depth, b.depth), (a.opacity, b.opacity)):
        assert torch.equal(x, y)


def test_stochastic_mode_seeded_and_bounded() -> None:
    det = render_random()
    s1, s2 = render_random(True, 5), render_random(True, 5)
    s3 = render_random(True, 6)
    assert torch.equal(s1.features, s2.features) and torch.equal(s1.depth, s2.depth)
    assert not torch.allclose(s1.features, det.features)
    assert not torch.allclose(s1.features, s3.features)
    step = (RAY_END - RAY_START) / 15
    for out in (s1, s3):
        assert torch.all(out.depth >= RAY_START) and torch.all(out.depth <= RAY_END + step)
        assert torch.all(out.opacity >= 0) and torch.all(out.opacity <= 1 + 1e-6)


# --------------------------------------------------------------------------- 9. batch consistency


def test_batch_equals_individual_renders() -> None:
    torch.manual_seed(21)
    planes = torch.randn(2, 3, C, 16, 16)
    decoder = TriplaneDecoder()
    cam2world = torch.stack([look_at_cam2world(0.3, 0.1), look_at_cam2world(-0.4, -0.2)])
    intrinsics = ffhq_intrinsics().expand(2, 3, 3).contiguous()
    kw = {"resolution": 8, "samples": 16, "importance_samples": 16}
    batch = render_triplanes(planes, decoder, cam2world, intrinsics, **kw)
    assert batch.opacity.min() > 0.05  # a non-trivial scene
    for n in range(2):
        single = render_triplanes(planes[n : n + 1], decoder, cam2world[n : n + 1], intrinsics[n : n + 1], **kw)
        torch.testing.assert_close(batch.features[n : n + 1], single.features, rtol=0, atol=1e-5)
        torch.testing.assert_close(batch.opacity[n : n + 1], single.opacity, rtol=0, atol=1e-5)
        torch.testing.assert_close(batch.depth[n : n + 1], single.depth, rtol=0, atol=1e-5)
    # The two images really differ (the batch is not one image repeated).
    assert not torch.allclose(batch.features[0], batch.features[1])


def test_render_shape_validation() -> None:
    cam2world, intrinsics = frontal_cameras(1)
    with pytest.raises(ValueError):
        render_triplanes(zero_planes(2), TriplaneDecoder(), cam2world, intrinsics, resolution=4, samples=4)


# --------------------------------------------------------------------------- 10. gradients


def test_gradients_reach_planes_and_decoder() -> None:
    torch.manual_seed(31)
    planes = torch.randn(1, 3, C, 16, 16, requires_grad=True)
    decoder = TriplaneDecoder()
    cam2world, intrinsics = frontal_cameras(1)
    out = render_triplanes(planes, decoder, cam2world, intrinsics, resolution=8, samples=12, importance_samples=12)
    loss = out.features.square().mean() + out.depth.mean() + out.opacity.mean()
    loss.backward()
    grads = {"planes": planes.grad, **{name: p.grad for name, p in decoder.named_parameters()}}
    for name, g in grads.items():
        assert g is not None, name
        assert torch.isfinite(g).all(), name
        assert g.abs().sum() > 0, name
    # Only texels in the cube's footprint get gradient from the frontal view; plane 0 (x, y) is hit.
    assert planes.grad[0, 0].abs().sum() > 0


# --------------------------------------------------------------------------- 11. fast CPU path vs reference
# The renderer's CPU path reads the tri-planes as weighted rows of a channels-last table and
# composites without reordering the features; these tests hold it to the straightforward
# implementation (grid_sample, features sorted with their depths), forward and backward.


def lookup_points(n: int, count: int, half: float, generator: torch.Generator) -> torch.Tensor:
    """Random points over 1.3x the box, plus faces, the half-texel fade, a corner and far outside."""
    inside = (torch.rand(n, count, 3, generator=generator, dtype=torch.float64) * 2 - 1) * half * 1.3
    extra = torch.tensor(
        [
            [half, 0.1, -0.2],
            [-half, half, 0.0],
            [0.05, -half * 1.05, half * 1.02],
            [half, half, half],
            [3.0, -0.1, 0.2],
            [3.0, -2.5, 1.2],
            [-1.5, -4.0, 5.0],
            [-7.0, 8.0, -9.0],
        ],
        dtype=torch.float64,
    ).expand(n, -1, 3)
    return torch.cat([inside, extra], 1)


@pytest.mark.parametrize("dtype,atol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize("plane_axes", ["orthogonal", "eg3d"])
@pytest.mark.parametrize("box_warp", [1.0, 1.6])
def test_row_lookup_matches_grid_sample(dtype: torch.dtype, atol: float, plane_axes: str, box_warp: float) -> None:
    gen = torch.Generator().manual_seed(40)
    planes = torch.randn(2, 3, 5, 7, 9, generator=gen, dtype=torch.float64).to(dtype)  # H != W
    points = lookup_points(2, 300, box_warp / 2, gen).to(dtype)
    upstream = torch.randn(2, points.shape[1], 5, generator=gen, dtype=torch.float64).to(dtype)

    def run(fn):
        p = planes.clone().requires_grad_(True)
        x = points.clone().requires_grad_(True)
        out = fn(p, x, plane_axes, box_warp)
        (out * upstream).sum().backward()
        return out, p.grad, x.grad

    got, got_planes, got_points = run(sample_triplanes)
    ref, ref_planes, ref_points = run(sample_triplanes_grid_sample)
    assert got.dtype == dtype
    torch.testing.assert_close(got, ref, rtol=0, atol=atol)
    torch.testing.assert_close(got_planes, ref_planes, rtol=0, atol=atol)
    # d/dx scales with the texel count (W/box_warp per unit): compare relative to that.
    torch.testing.assert_close(got_points, ref_points, rtol=0, atol=atol * 20)
    outside = points.abs().amin(-1) > box_warp / 2 * (1 + 1 / 7)  # every coordinate past the outer half texel
    assert outside.sum() >= 6
    assert torch.equal(got[outside], torch.zeros_like(got[outside]))
    assert got_points.abs().sum() > 0 and got_planes.abs().sum() > 0


def test_row_lookup_non_finite_points_like_grid_sample() -> None:
    planes = torch.randn(1, 3, 4, 6, 6, generator=torch.Generator().manual_seed(41))
    points = torch.tensor(
        [[[math.nan, 0.1, 0.2], [0.1, math.inf, 0.0], [-math.inf, 0.0, 0.0], [1e30, -1e30, 0.0], [0.1, 0.2, 0.3]]]
    )
    for layout in ("orthogonal", "eg3d"):
        got = sample_triplanes(planes, points, layout, 1.0)
        ref = sample_triplanes_grid_sample(planes, points, layout, 1.0)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-6, equal_nan=True)
    assert torch.isnan(got[0, 0]).all() and torch.equal(got[0, 3], torch.zeros(4))


def shuffled_samples(gen: torch.Generator, n: int = 2, rays: int = 5, k: int = 11, c: int = 4):
    depths = torch.rand(n, rays, k, 1, generator=gen, dtype=torch.float64) * 2 + 1
    sigma = torch.randn(n, rays, k, 1, generator=gen, dtype=torch.float64) * 3
    features = torch.rand(n, rays, k, c, generator=gen, dtype=torch.float64)
    sigma[0, 0] = -100.0  # an empty ray: its depth is NaN -> inf
    depths[1, 1, 3] = depths[1, 1, 7]  # a tie (same point: same sigma and features)
    sigma[1, 1, 3], features[1, 1, 3] = sigma[1, 1, 7], features[1, 1, 7]
    return features, sigma, depths


def test_march_unsorted_matches_sorted_march() -> None:
    features, sigma, depths = shuffled_samples(torch.Generator().manual_seed(42))
    upstream = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(43), dtype=torch.float64)

    def leaves():
        return features.clone().requires_grad_(True), sigma.clone().requires_grad_(True)

    f_ref, s_ref = leaves()
    sorted_depths, order = torch.sort(depths, dim=-2)
    ref = march_rays(
        torch.gather(f_ref, -2, order.expand(-1, -1, -1, 4)), torch.gather(s_ref, -2, order), sorted_depths
    )
    ((ref.features * upstream).sum() + ref.depth.clamp_max(1e6).sum() + ref.weights.sum()).backward()

    f_new, s_new = leaves()
    got = march_unsorted([f_new[:, :, :6], f_new[:, :, 6:]], s_new, depths)  # two parts, as coarse + fine
    depth = torch.clamp(got.depth, depths.min(), depths.max())  # the caller's call-wide clamp
    ((got.features * upstream).sum() + depth.clamp_max(1e6).sum() + got.opacity.sum()).backward()

    torch.testing.assert_close(got.features, ref.features, rtol=0, atol=1e-12)
    torch.testing.assert_close(depth, ref.depth, rtol=0, atol=1e-12)
    torch.testing.assert_close(got.opacity, ref.weights.sum(2), rtol=0, atol=1e-12)
    assert torch.isinf(got.depth[0, 0]).all() and depth[0, 0].item() == depths.max().item()
    torch.testing.assert_close(f_new.grad, f_ref.grad, rtol=0, atol=1e-12)
    # The empty ray's depth is 0/0 in both, so its sigma gradient is NaN in both.
    torch.testing.assert_close(s_new.grad, s_ref.grad, rtol=0, atol=1e-12, equal_nan=True)
    assert torch.isfinite(s_new.grad[1:]).all()


def reference_scene(plane_axes: str, seed: int = 44, n: int = 2, size: int = 24):
    torch.manual_seed(seed)
    planes = torch.randn(n, 3, C, size, size) * 0.7
    decoder = TriplaneDecoder()
    with torch.no_grad():
        decoder.fc1.bias[0] = 2.0  # a partly opaque scene, so depths and weights matter
    cam2world = torch.stack([look_at_cam2world(0.25 * k - 0.1, 0.1 - 0.15 * k) for k in range(n)])
    return planes, decoder, cam2world, ffhq_intrinsics().expand(n, 3, 3).contiguous()


def render_with_gradients(render, planes, decoder, cam2world, intrinsics, **kw):
    planes = planes.clone().requires_grad_(True)
    decoder.zero_grad()
    out = render(planes, decoder, cam2world, intrinsics, **kw)
    loss = (out.features * torch.linspace(-1, 1, C).reshape(1, C, 1, 1)).square().mean()
    (loss + out.depth.mean() + out.opacity.mean()).backward()
    grads = {"planes": planes.grad, **{name: p.grad.clone() for name, p in decoder.named_parameters()}}
    return out, grads


@pytest.mark.parametrize("plane_axes", ["orthogonal", "eg3d"])
@pytest.mark.parametrize("stochastic", [False, True])
@pytest.mark.parametrize("chunk_points", [170, 1_000_000])  # 7 rays per chunk, the last one ragged; one chunk
def test_render_matches_reference_renderer(
    monkeypatch: pytest.MonkeyPatch, plane_axes: str, stochastic: bool, chunk_points: int
) -> None:
    monkeypatch.setattr(renderer_module, "cpu_chunk_points", lambda recording: chunk_points)
    planes, decoder, cam2world, intrinsics = reference_scene(plane_axes)
    kw = {"resolution": 10, "samples": 12, "importance_samples": 9, "plane_axes": plane_axes}
    outputs = []
    for render in (render_triplanes, render_triplanes_reference):
        gen = torch.Generator().manual_seed(45) if stochastic else None
        outputs.append(
            render_with_gradients(
                render, planes, decoder, cam2world, intrinsics, stochastic=stochastic, generator=gen, **kw
            )
        )
    (got, got_grads), (ref, ref_grads) = outputs
    assert 0.05 < ref.opacity.mean() < 0.95
    torch.testing.assert_close(got.features, ref.features, rtol=0, atol=2e-6)
    torch.testing.assert_close(got.depth, ref.depth, rtol=0, atol=2e-6)
    torch.testing.assert_close(got.opacity, ref.opacity, rtol=0, atol=2e-6)
    for name, ref_grad in ref_grads.items():
        scale = ref_grad.abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(got_grads[name], ref_grad, rtol=0, atol=1e-5 * scale, msg=name)


def test_render_depth_clamp_spans_all_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    # Empty rays take the largest depth of the whole call (§7), not of their chunk: with jitter
    # every chunk has its own maximum.
    monkeypatch.setattr(renderer_module, "cpu_chunk_points", lambda recording: 40)
    cam2world, intrinsics = frontal_cameras(2)
    kw = {"resolution": 6, "samples": 10, "importance_samples": 0, "stochastic": True}
    outs = [
        render(
            zero_planes(2),
            constant_decoder(-100.0),
            cam2world,
            intrinsics,
            generator=torch.Generator().manual_seed(46),
            **kw,
        )
        for render in (render_triplanes, render_triplanes_reference)
    ]
    assert torch.equal(outs[0].depth, outs[1].depth)
    assert torch.equal(outs[0].depth, torch.full_like(outs[0].depth, outs[0].depth.max().item()))
    assert outs[0].depth.max() > RAY_END  # the jittered last sample of one ray, somewhere in the call


@pytest.mark.parametrize(("kept", "grad", "chunks"), [(False, False, 7), (True, False, 2), (True, True, 7)])
def test_cpu_chunks_are_larger_where_freed_memory_is_kept(
    monkeypatch: pytest.MonkeyPatch, kept: bool, grad: bool, chunks: int
):
    """small-128's batch of 8 (32² rays, 24 + 24 samples: 196,608 points) goes in 7 chunks of 170 rays with
    glibc's default allocator and in 2 of 682 where the allocator keeps freed memory, unless autograd records the
    render (training) — with the same result."""
    monkeypatch.setattr(renderer_module, "freed_memory_is_kept", lambda: kept)
    rays_per_call = []
    original = renderer_module._render_rays

    def counting(lookup, decoder, origins, *rest):
        rays_per_call.append(origins.shape[1])
        return original(lookup, decoder, origins, *rest)

    monkeypatch.setattr(renderer_module, "_render_rays", counting)
    cam2world, intrinsics = frontal_cameras(8)
    planes = torch.randn(8, 3, 32, 16, 16, generator=torch.Generator().manual_seed(3))
    decoder = TriplaneDecoder(32, 64).requires_grad_(grad)
    out = render_triplanes(planes, decoder, cam2world, intrinsics, resolution=32, samples=24, importance_samples=24)
    assert len(rays_per_call) == chunks and sum(rays_per_call) == 32 * 32
    monkeypatch.setattr(renderer_module, "_render_rays", original)
    monkeypatch.setattr(renderer_module, "cpu_chunk_points", lambda recording: 10**9)
    whole = render_triplanes(planes, decoder, cam2world, intrinsics, resolution=32, samples=24, importance_samples=24)
    torch.testing.assert_close(out.features, whole.features, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.depth, whole.depth, rtol=0, atol=1e-6)


def test_decoder_from_projected_equals_the_decoder_on_the_unprojected_features():
    torch.manual_seed(0)
    decoder = TriplaneDecoder()
    features = torch.randn(2, 50, 32)
    with torch.no_grad():
        direct = decoder(features)
        projected = decoder.from_projected(features @ decoder.fc0.weight.T)
    torch.testing.assert_close(projected.sigma, direct.sigma, rtol=0, atol=1e-5)
    torch.testing.assert_close(projected.features, direct.features, rtol=0, atol=1e-6)


@pytest.mark.parametrize("plane_size", [16, 64])  # 16: texels few enough to fold; 64: too many for 16² rays
def test_folding_the_first_decoder_layer_into_the_planes_changes_no_render(monkeypatch, plane_size):
    """Inference may look up W0 f instead of f (linear either way); the result must be the unfolded one, and a
    render that records autograd (training, personalisation) must not fold at all."""
    torch.manual_seed(1)
    planes = torch.randn(2, 3, 32, plane_size, plane_size) * 0.5
    decoder = TriplaneDecoder()
    cam2world = torch.stack([look_at_cam2world(0.3, 0.1), look_at_cam2world(-0.2, 0.0)]).float()
    intrinsics = torch.stack([ffhq_intrinsics(), ffhq_intrinsics()]).float()
    folded_lookups = []
    original = renderer_module.TriplaneLookup

    def recording_lookup(*args, **kwargs):
        lookup = original(*args, **kwargs)
        folded_lookups.append(lookup.projected)
        return lookup

    monkeypatch.setattr(renderer_module, "TriplaneLookup", recording_lookup)
    with torch.no_grad():
        folded = render_triplanes(planes, decoder, cam2world, intrinsics, 16, 12, 12)
        monkeypatch.setattr(renderer_module, "FOLD_FIRST_LAYER", False)
        plain = render_triplanes(planes, decoder, cam2world, intrinsics, 16, 12, 12)
    # 16² rays x 24 samples = 6,144 points against 3 x 18² = 972 texels (folds) or 3 x 66² = 13,068 (does not).
    assert folded_lookups == [plane_size == 16, False]
    for name in ("features", "depth", "opacity"):
        torch.testing.assert_close(getattr(folded, name), getattr(plain, name), rtol=0, atol=2e-6)
    monkeypatch.setattr(renderer_module, "FOLD_FIRST_LAYER", True)
    folded_lookups.clear()
    render_triplanes(planes.requires_grad_(), decoder, cam2world, intrinsics, 16, 12, 12).features.sum().backward()
    assert folded_lookups == [False], "a render that records autograd keeps the decoder's first layer per point"
