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
"""

from __future__ import annotations

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


def march_rays(features: Tensor, sigma: Tensor, depths: Tensor) -> MarchResult:
    """Composite samples along each ray.

    Shapes: features [N, M, K, C], sigma [N, M, K, 1] (raw), depths [N, M, K, 1] sorted ascending.
    """
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    features_mid = (features[:, :, :-1] + features[:, :, 1:]) / 2
    sigma_mid = (sigma[:, :, :-1] + sigma[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2

    density = F.softplus(sigma_mid - 1)
    alpha = 1 - torch.exp(-density * deltas)
    transmittance = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2), dim=-2)
    weights = alpha * transmittance[:, :, :-1]  # [N, M, K-1, 1]

    composite = torch.sum(weights * features_mid, dim=-2)
    weight_total = weights.sum(dim=2)
    depth = torch.sum(weights * depths_mid, dim=-2) / weight_total
    depth = torch.nan_to_num(depth, float("inf"))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    return MarchResult(features=composite * 2 - 1, depth=depth, weights=weights)
