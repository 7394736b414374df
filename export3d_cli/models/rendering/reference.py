"""Reference renderer: the renderer before the CPU speed-up, a plain transcription of EG3D's.

Tri-plane lookup with ``grid_sample``, one march over all rays at once, and the
merged coarse + fine samples sorted with their 32 features. ``render_triplanes``
must give the same outputs and gradients; the tests and
``benchmarks/bench_renderer.py`` compare the two. Not used by the model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from export3d_cli.config import PlaneAxes
from export3d_cli.geometry.rays import pixel_rays
from export3d_cli.models.rendering.decoder import TriplaneDecoder
from export3d_cli.models.rendering.depth_sampler import (
    inverse_cdf_samples,
    smoothed_importance_weights,
    stratified_depths,
)
from export3d_cli.models.rendering.ray_marcher import march_rays
from export3d_cli.models.rendering.renderer import RenderOutput
from export3d_cli.models.rendering.triplane_sampler import sample_triplanes_grid_sample


def _decode(
    planes: Tensor,
    decoder: TriplaneDecoder,
    origins: Tensor,
    directions: Tensor,
    depths: Tensor,
    plane_axes: PlaneAxes,
    box_warp: float,
) -> tuple[Tensor, Tensor]:
    """Shapes: depths [N, M, K, 1] -> features [N, M, K, C], sigma [N, M, K, 1]."""
    n, rays, k, _ = depths.shape
    points = (origins.unsqueeze(-2) + depths * directions.unsqueeze(-2)).reshape(n, -1, 3)  # [N, M*K, 3]
    decoded = decoder(sample_triplanes_grid_sample(planes, points, plane_axes, box_warp))
    return decoded.features.reshape(n, rays, k, -1), decoded.sigma.reshape(n, rays, k, 1)


def render_triplanes_reference(
    planes: Tensor,
    decoder: TriplaneDecoder,
    cam2world: Tensor,
    intrinsics: Tensor,
    resolution: int = 64,
    samples: int = 48,
    importance_samples: int = 48,
    ray_start: float = 2.25,
    ray_end: float = 3.3,
    box_warp: float = 1.0,
    plane_axes: PlaneAxes = "orthogonal",
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> RenderOutput:
    """``render_triplanes``'s contract, computed the straightforward way (same random draws)."""
    n = planes.shape[0]
    cam2world = cam2world.to(planes.dtype)
    intrinsics = intrinsics.to(planes.dtype)
    origins, directions = pixel_rays(cam2world, intrinsics, resolution)  # [N, M, 3] each
    rays = origins.shape[1]

    depths = stratified_depths(n, rays, samples, ray_start, ray_end, stochastic, planes.device, generator)
    features, sigma = _decode(planes, decoder, origins, directions, depths, plane_axes, box_warp)

    if importance_samples > 0:
        coarse = march_rays(features, sigma, depths)
        with torch.no_grad():
            weights = smoothed_importance_weights(coarse.weights.reshape(n * rays, samples - 1))
            flat = depths.reshape(n * rays, samples)
            mids = 0.5 * (flat[:, :-1] + flat[:, 1:])  # [N*M, S-1] bin edges
            fine = inverse_cdf_samples(mids, weights, importance_samples, stochastic, generator)
        fine_depths = fine.reshape(n, rays, importance_samples, 1)
        fine_features, fine_sigma = _decode(planes, decoder, origins, directions, fine_depths, plane_axes, box_warp)
        depths = torch.cat([depths, fine_depths], dim=-2)
        features = torch.cat([features, fine_features], dim=-2)
        sigma = torch.cat([sigma, fine_sigma], dim=-2)
        depths, order = torch.sort(depths, dim=-2)
        features = torch.gather(features, -2, order.expand(-1, -1, -1, features.shape[-1]))
        sigma = torch.gather(sigma, -2, order)

    result = march_rays(features, sigma, depths)
    opacity = result.weights.sum(dim=2)  # [N, M, 1]

    def image(x: Tensor) -> Tensor:  # [N, M, C] -> [N, C, R, R]
        return x.permute(0, 2, 1).reshape(n, x.shape[-1], resolution, resolution)

    return RenderOutput(features=image(result.features), depth=image(result.depth), opacity=image(opacity))
