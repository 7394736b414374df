"""Volume rendering of a tri-plane (paper §3.3), EG3D conventions to the letter.

Pipeline per image: pixel-centre rays -> S stratified depths -> tri-plane lookup
and decoder -> coarse march (weights only) -> S2 importance depths -> decoder
-> merge coarse and fine samples sorted by depth -> ONE march over all S + S2
samples, which alone produces the outputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from export3d_cli.config import PlaneAxes, RendererConfig
from export3d_cli.geometry.rays import pixel_rays
from export3d_cli.models.rendering.decoder import TriplaneDecoder
from export3d_cli.models.rendering.depth_sampler import importance_depths, stratified_depths
from export3d_cli.models.rendering.ray_marcher import march_rays
from export3d_cli.models.rendering.triplane_sampler import sample_triplanes


@dataclass
class RenderOutput:
    """Shapes: features [N, C, R, R] (2F - 1; first 3 = raw RGB), depth [N, 1, R, R], opacity [N, 1, R, R]."""

    features: Tensor
    depth: Tensor
    opacity: Tensor


def _decode(
    planes: Tensor,
    decoder: TriplaneDecoder,
    origins: Tensor,
    directions: Tensor,
    depths: Tensor,
    plane_axes: PlaneAxes,
    box_warp: float,
) -> tuple[Tensor, Tensor]:
    """Decoder outputs at o + t d. Shapes: depths [N, M, K, 1] -> features [N, M, K, C], sigma [N, M, K, 1]."""
    n, rays, k, _ = depths.shape
    points = (origins.unsqueeze(-2) + depths * directions.unsqueeze(-2)).reshape(n, -1, 3)  # [N, M*K, 3]
    decoded = decoder(sample_triplanes(planes, points, plane_axes, box_warp))
    return decoded.features.reshape(n, rays, k, -1), decoded.sigma.reshape(n, rays, k, 1)


def render_triplanes(
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
    """Render tri-planes from EG3D cameras.

    Shapes: planes [N, 3, C, H, W], cam2world [N, 4, 4] (OpenCV camera-to-world),
    intrinsics [N, 3, 3] (normalised) -> RenderOutput at ``resolution``².
    ``stochastic`` turns on stratified jitter and random importance draws (training).
    """
    n = planes.shape[0]
    if cam2world.shape != (n, 4, 4) or intrinsics.shape != (n, 3, 3):
        raise ValueError(
            f"expected cam2world [{n}, 4, 4] and intrinsics [{n}, 3, 3], got "
            f"{tuple(cam2world.shape)} and {tuple(intrinsics.shape)}"
        )
    cam2world = cam2world.to(planes.dtype)
    intrinsics = intrinsics.to(planes.dtype)
    origins, directions = pixel_rays(cam2world, intrinsics, resolution)  # [N, M, 3] each
    rays = origins.shape[1]

    depths = stratified_depths(n, rays, samples, ray_start, ray_end, stochastic, planes.device, generator)
    features, sigma = _decode(planes, decoder, origins, directions, depths, plane_axes, box_warp)

    if importance_samples > 0:
        coarse = march_rays(features, sigma, depths)
        fine_depths = importance_depths(depths, coarse.weights, importance_samples, stochastic, generator)
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


class TriplaneRenderer(nn.Module):
    """The decoder plus its rendering settings, as one module of the model."""

    def __init__(self, config: RendererConfig, feature_dim: int, resolution: int) -> None:
        super().__init__()
        self.config = config
        self.resolution = resolution
        self.decoder = TriplaneDecoder(feature_dim, config.decoder_hidden)

    def forward(self, planes: Tensor, cam2world: Tensor, intrinsics: Tensor) -> RenderOutput:
        """Stochastic sampling in training mode, deterministic in eval mode."""
        c = self.config
        return render_triplanes(
            planes,
            self.decoder,
            cam2world,
            intrinsics,
            resolution=self.resolution,
            samples=c.samples,
            importance_samples=c.importance_samples,
            ray_start=c.ray_start,
            ray_end=c.ray_end,
            box_warp=c.box_warp,
            plane_axes=c.plane_axes,
            stochastic=self.training,
        )
