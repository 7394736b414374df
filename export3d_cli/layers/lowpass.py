"""Fixed Gaussian low-pass filter after each pixel shuffle (paper §3.2).

Pixel shuffle turns each token into a 2x2 block, which leaves a grid pattern
at token borders; a small separable Gaussian, applied depth-wise, smooths
those borders. The kernel is a fixed, non-trainable buffer derived from the
config, so it is not saved with the weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def gaussian_kernel1d(size: int, sigma: float) -> Tensor:
    """Normalised 1-D Gaussian of odd ``size`` (sums to 1, so flat regions are preserved)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-(x**2) / (2 * sigma**2))
    return (k / k.sum()).float()


class GaussianLowPass(nn.Module):
    def __init__(self, channels: int, size: int = 5, sigma: float = 1.0) -> None:
        super().__init__()
        if size % 2 == 0 or sigma <= 0 or not math.isfinite(sigma):
            raise ValueError(f"low-pass filter needs an odd size and sigma > 0, got {size}, {sigma}")
        self.channels = channels
        self.register_buffer("kernel", gaussian_kernel1d(size, sigma), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: [B, C, H, W] -> [B, C, H, W] (reflect padding keeps borders unbiased)."""
        size = self.kernel.numel()
        pad = size // 2
        k = self.kernel.to(x.dtype)
        x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        x = F.conv2d(x, k.view(1, 1, 1, size).expand(self.channels, 1, 1, size), groups=self.channels)
        return F.conv2d(x, k.view(1, 1, size, 1).expand(self.channels, 1, size, 1), groups=self.channels)
