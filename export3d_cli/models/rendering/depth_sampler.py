"""Depths along each ray: stratified coarse samples and importance (fine) samples.

``eg3d-conventions.md`` §4 and §8. Randomness (stratified jitter, importance
draws) is on only when ``stochastic`` is set, for training; inference is
deterministic (jitter 0, importance u = linspace(0, 1, S2)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def stratified_depths(
    n: int,
    rays: int,
    samples: int,
    ray_start: float,
    ray_end: float,
    stochastic: bool,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """t_k = linspace(start, end, S)[k] + U_k * (end - start)/(S - 1), U = 0 unless stochastic.

    Shapes: -> depths [N, M, S, 1].
    """
    depths = torch.linspace(ray_start, ray_end, samples, device=device).reshape(1, 1, samples, 1)
    depths = depths.repeat(n, rays, 1, 1)
    if stochastic:
        delta = (ray_end - ray_start) / (samples - 1)
        depths = depths + torch.rand(depths.shape, device=device, generator=generator) * delta
    return depths


def smoothed_importance_weights(weights: Tensor) -> Tensor:
    """Max filter (window 2, -inf padding), box filter (window 2), + 0.01, drop both ends.

    Shapes: weights [R, S-1] (coarse march weights) -> [R, S-3].
    """
    smoothed = F.max_pool1d(weights.unsqueeze(1).float(), 2, 1, padding=1)  # [R, 1, S]
    smoothed = F.avg_pool1d(smoothed, 2, 1).squeeze(1)  # [R, S-1]
    return (smoothed + 0.01)[:, 1:-1]


def importance_uniforms(
    rays: int,
    count: int,
    stochastic: bool,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The u_i of the inverse-CDF draw: Uniform[0, 1) if stochastic, else linspace(0, 1, count).

    Drawn for all rays of a call at once, so a renderer that marches rays in chunks
    consumes the random stream as one draw would. Shapes: -> [rays, count].
    """
    if stochastic:
        return torch.rand(rays, count, device=device, generator=generator)
    return torch.linspace(0, 1, count, device=device).expand(rays, count)


def inverse_cdf(bins: Tensor, weights: Tensor, u: Tensor, eps: float = 1e-5) -> Tensor:
    """Depths at the quantiles ``u`` of the piecewise-constant pdf ``weights`` over ``bins`` edges.

    Only the first ``len(weights) + 1`` edges are used (the reference drops the
    last mid-point). Shapes: bins [R, B], weights [R, B-2], u [R, count] -> depths [R, count].
    """
    rays, intervals = weights.shape
    count = u.shape[1]
    weights = weights + eps
    pdf = weights / torch.sum(weights, -1, keepdim=True)
    cdf = torch.cumsum(pdf, -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)  # [R, B-1]
    u = u.contiguous()
    index = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp_min(index - 1, 0)
    above = torch.clamp_max(index, intervals)
    pairs = torch.stack([below, above], -1).view(rays, 2 * count)
    cdf_pairs = torch.gather(cdf, 1, pairs).view(rays, count, 2)
    bin_pairs = torch.gather(bins, 1, pairs).view(rays, count, 2)
    denom = cdf_pairs[..., 1] - cdf_pairs[..., 0]
    denom = torch.where(denom < eps, torch.ones_like(denom), denom)
    return bin_pairs[..., 0] + (u - cdf_pairs[..., 0]) / denom * (bin_pairs[..., 1] - bin_pairs[..., 0])


def inverse_cdf_samples(
    bins: Tensor,
    weights: Tensor,
    count: int,
    stochastic: bool,
    generator: torch.Generator | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Draw ``count`` depths from the piecewise-constant pdf ``weights`` over ``bins`` edges.

    Shapes: bins [R, B], weights [R, B-2] -> depths [R, count].
    """
    u = importance_uniforms(weights.shape[0], count, stochastic, bins.device, generator)
    return inverse_cdf(bins, weights, u, eps)


def importance_depths(coarse_depths: Tensor, coarse_weights: Tensor, u: Tensor) -> Tensor:
    """Fine depths from the coarse pass's weights (no gradient flows through them).

    Shapes: coarse_depths [N, M, S, 1], coarse_weights [N, M, S-1, 1],
    u [N, M, count] (:func:`importance_uniforms`) -> [N, M, count, 1].
    """
    n, rays, samples, _ = coarse_depths.shape
    count = u.shape[-1]
    with torch.no_grad():
        depths = coarse_depths.reshape(n * rays, samples)
        weights = smoothed_importance_weights(coarse_weights.reshape(n * rays, samples - 1))
        mids = 0.5 * (depths[:, :-1] + depths[:, 1:])  # [R, S-1] bin edges
        fine = inverse_cdf(mids, weights, u.reshape(n * rays, count))
    return fine.detach().reshape(n, rays, count, 1)
