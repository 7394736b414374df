"""Super-resolution (paper §3.3): plain conv blocks, no style modulation.

The 32-channel feature image at R/4 goes through two x2 stages to RGB at R;
the bilinearly upsampled raw RGB (the first 3 feature channels) is added as a
skip, so the raw render and the final image agree in colour.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from export3d_cli.config import SuperResolutionConfig
from export3d_cli.layers.conv_block import ResidualConvBlock


class SuperResolution(nn.Module):
    def __init__(self, config: SuperResolutionConfig, feature_dim: int = 32) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        width = feature_dim
        for out in config.channels:
            blocks = [ResidualConvBlock(width if i == 0 else out, out) for i in range(config.blocks_per_stage)]
            stages.append(nn.Sequential(*blocks))
            width = out
        self.stages = nn.ModuleList(stages)
        self.to_rgb = nn.Conv2d(width, 3, 1)
        # Start as "upsampled raw RGB": the learned residual is zero at init.
        nn.init.zeros_(self.to_rgb.weight)
        nn.init.zeros_(self.to_rgb.bias)

    def forward(self, features: Tensor) -> Tensor:
        """Shapes: features [B, C, R/4, R/4] -> RGB [B, 3, R, R] (~[-1, 1])."""
        x = features
        for stage in self.stages:
            x = stage(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        scale = 2 ** len(self.stages)
        skip = F.interpolate(features[:, :3], scale_factor=scale, mode="bilinear", align_corners=False)
        return skip + self.to_rgb(x)
