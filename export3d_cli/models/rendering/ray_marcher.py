"""Ray marcher: discrete form of paper Eqs. (9)-(10) (``eg3d-conventions.md`` §7).

For K depth-sorted samples per ray (K - 1 intervals, no infinite last one):

    delta_k = t_{k+1} - t_k
    rho_k   = softplus((sigma_k + sigma_{k+1}) / 2 - 1)     raw sigma averaged, then activated
    alpha_k = 1 - exp(-rho_k * delta_k)
    w_k     = alpha_k * prod_{j<k} (1 - alpha_j + 1e-10)
    F       = sum_k w_k (c_k + c_{k+1}) / 2,  W = sum_k w_k
    D       = sum_k w_k (t_k + t_{k+1}) / 2 / W, NaN -> inf, clamped to [min t, max t]
              taken over the whole depth tensor of the call
    output  = 2 F - 1 on every channel (no white background)

:func:`march_rays` is that recipe on depth-sorted samples. :func:`march_unsorted` gives
the same result for samples in any order without reordering the features: only depths
and densities are sorted, and F is regrouped per sample,
F = sum_j v_j c_j with v_j = (w_{k-1} + w_k) / 2 for the sample j at sorted position k.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class MarchResult:
    """Shapes: features [N, M, C], depth [N, M, 1], weights [N, M, K-1, 1]."""

    features: Tensor
    depth: Tensor
    weights: Tensor


@dataclass
class RayComposite:
    """Shapes: features [N, M, C] (2F - 1), depth [N, M, 1] (NaN -> inf, not yet clamped), opacity [N, M, 1]."""

    features: Tensor
    depth: Tensor
    opacity: Tensor


def interval_weights(sigma: Tensor, depths: Tensor) -> Tensor:
    """w_k of the K - 1 intervals. Shapes: sigma [..., K, 1] (raw), depths [..., K, 1] sorted -> [..., K-1, 1]."""
    deltas = depths[..., 1:, :] - depths[..., :-1, :]
    sigma_mid = (sigma[..., :-1, :] + sigma[..., 1:, :]) / 2
    density = F.softplus(sigma_mid - 1)
    alpha = 1 - torch.exp(-density * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1, :]), 1 - alpha + 1e-10], dim=-2), dim=-2)
    return alpha * transmittance[..., :-1, :]


def march_rays(features: Tensor, sigma: Tensor, depths: Tensor) -> MarchResult:
    """Composite depth-sorted samples along each ray.

    Shapes: features [N, M, K, C], sigma [N, M, K, 1] (raw), depths [N, M, K, 1] sorted ascending.
    """
    weights = interval_weights(sigma, depths)  # [N, M, K-1, 1]
    features_mid = (features[:, :, :-1] + features[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    composite = torch.sum(weights * features_mid, dim=-2)
    weight_total = weights.sum(dim=2)
    depth = torch.sum(weights * depths_mid, dim=-2) / weight_total
    depth = torch.nan_to_num(depth, float("inf"))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    return MarchResult(features=composite * 2 - 1, depth=depth, weights=weights)


def march_unsorted(features: Sequence[Tensor], sigma: Tensor, depths: Tensor) -> RayComposite:
    """:func:`march_rays` for samples in any depth order, features given in consecutive parts.

    The call-wide depth clamp is left to the caller, who may march a call's rays in chunks.
    Shapes: features parts [N, M, K_i, C] with sum K_i = K, in the order of
    sigma [N, M, K, 1] (raw) and depths [N, M, K, 1].
    """
    depths_sorted, order = torch.sort(depths, dim=-2)
    weights = interval_weights(torch.gather(sigma, -2, order), depths_sorted)  # [N, M, K-1, 1]
    # v_k = (w_{k-1} + w_k) / 2 at sorted position k (w_{-1} = w_{K-1} = 0), put back in sample order.
    padded = F.pad(weights.squeeze(-1), (1, 1))  # [N, M, K+1]
    sorted_share = (padded[..., :-1] + padded[..., 1:]) / 2  # [N, M, K]
    share = torch.zeros_like(sorted_share).scatter(-1, order.squeeze(-1), sorted_share)
    shares = share.split([part.shape[2] for part in features], dim=-1)
    terms = [torch.sum(v.unsqueeze(-1) * part, dim=2) for v, part in zip(shares, features, strict=True)]
    composite = sum(terms[1:], terms[0])  # [N, M, C]

    depths_mid = (depths_sorted[:, :, :-1] + depths_sorted[:, :, 1:]) / 2
    opacity = weights.sum(dim=2)
    depth = torch.nan_to_num(torch.sum(weights * depths_mid, dim=-2) / opacity, float("inf"))
    return RayComposite(features=composite * 2 - 1, depth=depth, opacity=opacity)
