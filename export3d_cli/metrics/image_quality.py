"""PSNR and SSIM: pixel fidelity to a ground-truth frame (self-reenactment, synthetic cross-identity).

- PSNR in dB per image on images mapped to [0, 1] (peak 1), then averaged over
  frames — as the paper's Table 1.
- SSIM: Wang et al. 2004 with an 11×11 Gaussian window (σ = 1.5), reflect
  padding, the three colour channels averaged.
Both take images in [-1, 1], the model's range; ``to_model_range`` converts
uint8 video frames.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def to_model_range(frames: np.ndarray) -> Tensor:
    """uint8 RGB frames [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8_frames(images: Tensor) -> np.ndarray:
    """The inverse of ``to_model_range``: [B, 3, H, W] in [-1, 1] (clamped) -> uint8 [B, H, W, 3]."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _gaussian_window(size: int, sigma: float, channels: int, like: Tensor) -> Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(x: Tensor, y: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image. Shapes: x, y [B, C, H, W] in [-1, 1] -> [B]."""
    x = (x + 1) / 2
    y = (y + 1) / 2
    channels = x.shape[1]
    kernel = _gaussian_window(window, sigma, channels, x)
    pad = window // 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), kernel, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return score.flatten(1).mean(dim=1)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """PSNR in dB per image for images in [-1, 1] (peak = the [0, 1] range). Shapes: [B, C, H, W] -> [B]."""
    mse = (((x + 1) / 2).clamp(0, 1) - ((y + 1) / 2).clamp(0, 1)).pow(2).flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))
