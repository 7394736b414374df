"""Volume rendering of a tri-plane (paper §3.3), EG3D conventions to the letter.

Pipeline per image: pixel-centre rays -> S stratified depths -> tri-plane lookup
and decoder -> coarse march (weights only) -> S2 importance depths -> decoder
-> ONE march over all S + S2 samples in depth order, which alone produces the
outputs. The merged march sorts only depths and densities; the features are
composited in sample order (``ray_marcher.march_unsorted``).

On CPU the rays are rendered in chunks of about ``CPU_CHUNK_POINTS`` sample
points per pass. Unchunked, a call's intermediates are tens of MiB each, so glibc
maps them fresh from the kernel, page-faults every page and unmaps them again, on
every call; in chunks they stay a few MiB, are reused from the heap and stay in
cache (about 1.7x faster at 128² planes, 64² rays, 48 + 48 samples). Where the
allocator keeps freed memory (``allocator.keep_freed_memory``, which the command-line
program applies) large blocks are reused too, and the per-chunk cost of ~60 small ops
dominates instead: there chunks are ``CPU_CHUNK_POINTS_KEPT_HEAP`` points (``small-128``
at batch 8, 2 chunks instead of 7: 26.6 → 21.4 ms per frame; the FFHQ setting at
batch 1: 174 → 166 ms; medians of 7 and 5 runs, 2 cores). Twice that (one chunk for
``small-128``) was no faster end to end and peaked ~120 MB higher. With autograd
recording (training, personalisation) the chunks stay at ``CPU_CHUNK_POINTS``: a
``small-128`` training step was not faster with the larger ones (1.50 vs 1.44 s, 3 runs
each, overlapping). Rays are
independent except for the depth clamp, which is applied to the whole call at the
end, so chunking changes no result; random draws are made for the whole call
before chunking, in the order of an unchunked render. Each chunk runs its own
parallel ops, so on a CPU oversubscribed by other processes libgomp's spinning
workers cost more per chunk: there, run with ``OMP_WAIT_POLICY=PASSIVE`` or fewer
torch threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from export3d_cli.allocator import freed_memory_is_kept
from export3d_cli.config import PlaneAxes, RendererConfig
from export3d_cli.geometry.rays import pixel_rays
from export3d_cli.models.rendering.decoder import TriplaneDecoder
from export3d_cli.models.rendering.depth_sampler import importance_depths, importance_uniforms, stratified_depths
from export3d_cli.models.rendering.ray_marcher import RayComposite, interval_weights, march_unsorted
from export3d_cli.models.rendering.triplane_sampler import TriplaneLookup

FOLD_FIRST_LAYER = True  # inference: the decoder's first layer on the planes' texels, not on every sample point
# Folding costs a [texels, C] x [C, hidden] product and doubles the width of every lookup; it pays where sample
# points outnumber texels enough: small-128 (3.8 points per texel) forward 1.05-1.09x, EG3D's FFHQ setting (256²
# planes, 2.0 per texel) 0.98-1.00x (15 interleaved runs each, 2 cores).
FOLD_POINTS_PER_TEXEL = 3.0
CPU_CHUNK_POINTS = 32768  # sample points per pass and chunk on CPU (48 samples per ray: 682 rays)
CPU_CHUNK_POINTS_KEPT_HEAP = 131072  # the same where freed memory is kept for reuse (see the module docstring)


def cpu_chunk_points(recording: bool) -> int:
    """Sample points per chunk on CPU, for the allocator setting in force; ``recording``: autograd records the
    render (see the module docstring)."""
    return CPU_CHUNK_POINTS_KEPT_HEAP if freed_memory_is_kept() and not recording else CPU_CHUNK_POINTS


@dataclass
class RenderOutput:
    """Shapes: features [N, C, R, R] (2F - 1; first 3 = raw RGB), depth [N, 1, R, R], opacity [N, 1, R, R]."""

    features: Tensor
    depth: Tensor
    opacity: Tensor


def _decode(
    lookup: TriplaneLookup, decoder: TriplaneDecoder, origins: Tensor, directions: Tensor, depths: Tensor
) -> tuple[Tensor, Tensor]:
    """Decoder outputs at o + t d. Shapes: depths [N, M, K, 1] -> features [N, M, K, C], sigma [N, M, K, 1]."""
    n, rays, k, _ = depths.shape
    points = (origins.unsqueeze(-2) + depths * directions.unsqueeze(-2)).reshape(n, -1, 3)  # [N, M*K, 3]
    sampled = lookup(points)
    decoded = decoder.from_projected(sampled) if lookup.projected else decoder(sampled)
    return decoded.features.reshape(n, rays, k, -1), decoded.sigma.reshape(n, rays, k, 1)


def _render_rays(
    lookup: TriplaneLookup,
    decoder: TriplaneDecoder,
    origins: Tensor,
    directions: Tensor,
    depths: Tensor,
    uniforms: Tensor | None,
) -> tuple[RayComposite, Tensor]:
    """Coarse pass, importance pass (if ``uniforms``) and the merged march for some rays.

    Shapes: origins, directions [N, M, 3], depths [N, M, S, 1], uniforms [N, M, S2]
    -> march (depth not yet clamped), all depths [N, M, S + S2, 1].
    """
    features, sigma = _decode(lookup, decoder, origins, directions, depths)
    if uniforms is None:
        return march_unsorted([features], sigma, depths), depths
    with torch.no_grad():
        coarse_weights = interval_weights(sigma, depths)  # only steers the fine depths
    fine_depths = importance_depths(depths, coarse_weights, uniforms)
    fine_features, fine_sigma = _decode(lookup, decoder, origins, directions, fine_depths)
    depths = torch.cat([depths, fine_depths], dim=-2)
    sigma = torch.cat([sigma, fine_sigma], dim=-2)
    return march_unsorted([features, fine_features], sigma, depths), depths


def _fused_renderer(planes: Tensor, decoder: TriplaneDecoder):
    """``fused_renderer.render_triplanes_fused`` where it applies (CUDA, no autograd, Triton installed), else None."""
    if not planes.is_cuda:
        return None
    try:
        from export3d_cli.models.rendering import fused_renderer
    except ImportError:  # Triton is not installed (the gpu extra)
        return None
    return fused_renderer.render_triplanes_fused if fused_renderer.fused_renderer_applies(planes, decoder) else None


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
    On CUDA without autograd, with Triton installed, the fused kernels of ``fused_renderer``
    compute the same (``EXPORT3D_FUSED_RENDERER=0`` turns them off).
    """
    n = planes.shape[0]
    if cam2world.shape != (n, 4, 4) or intrinsics.shape != (n, 3, 3):
        raise ValueError(
            f"expected cam2world [{n}, 4, 4] and intrinsics [{n}, 3, 3], got "
            f"{tuple(cam2world.shape)} and {tuple(intrinsics.shape)}"
        )
    fused = _fused_renderer(planes, decoder)
    if fused is not None:
        return fused(planes, decoder, cam2world, intrinsics, resolution, samples, importance_samples, ray_start,
                     ray_end, box_warp, plane_axes, stochastic, generator)  # fmt: skip
    cam2world = cam2world.to(planes.dtype)
    intrinsics = intrinsics.to(planes.dtype)
    origins, directions = pixel_rays(cam2world, intrinsics, resolution)  # [N, M, 3] each
    rays = origins.shape[1]

    depths = stratified_depths(n, rays, samples, ray_start, ray_end, stochastic, planes.device, generator)
    uniforms = None
    if importance_samples > 0:
        uniforms = importance_uniforms(n * rays, importance_samples, stochastic, planes.device, generator)
        uniforms = uniforms.reshape(n, rays, importance_samples)
    recording = torch.is_grad_enabled() and (planes.requires_grad or any(p.requires_grad for p in decoder.parameters()))
    # Without autograd, and where there are several sample points per texel, the decoder's first layer goes onto the
    # texels (see FOLD_POINTS_PER_TEXEL). Recording, the wider table's scatter backward costs more than it saves
    # (forward + backward 0.82-0.86x at small-128 and EG3D's FFHQ setting), so not there.
    points = rays * (samples + importance_samples)
    texels = planes.shape[1] * (planes.shape[-2] + 2) * (planes.shape[-1] + 2)
    fold = FOLD_FIRST_LAYER and not recording and points >= FOLD_POINTS_PER_TEXEL * texels
    lookup = TriplaneLookup(planes, plane_axes, box_warp, decoder.fc0.weight if fold else None)

    chunk = rays  # one piece on accelerators: fewer, larger kernels
    if planes.device.type == "cpu":
        chunk = max(1, cpu_chunk_points(recording) // (n * max(samples, importance_samples)))
    marches, lows, highs = [], [], []
    for start in range(0, rays, chunk):
        part = slice(start, start + chunk)
        march, all_depths = _render_rays(
            lookup,
            decoder,
            origins[:, part],
            directions[:, part],
            depths[:, part],
            None if uniforms is None else uniforms[:, part],
        )
        marches.append(march)
        lows.append(all_depths.min())
        highs.append(all_depths.max())
    features = torch.cat([m.features for m in marches], dim=1)  # [N, M, C]
    opacity = torch.cat([m.opacity for m in marches], dim=1)  # [N, M, 1]
    depth = torch.cat([m.depth for m in marches], dim=1)  # [N, M, 1]
    depth = torch.clamp(depth, torch.stack(lows).min(), torch.stack(highs).max())

    def image(x: Tensor) -> Tensor:  # [N, M, C] -> [N, C, R, R]
        return x.permute(0, 2, 1).reshape(n, x.shape[-1], resolution, resolution)

    return RenderOutput(features=image(features), depth=image(depth), opacity=image(opacity))


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
