"""Image encoder f_I of Eq. (1): an aligned face crop -> R^d, used only to pre-train CLeBS.

A plain strided conv network with global average pooling; after pre-training
it is thrown away (paper §3.1).
"""

from __future__ import annotations

import itertools

from torch import Tensor, nn

from export3d_cli.config import ImageEncoderConfig
from export3d_cli.layers.conv_block import downsample_block


class ImageEncoder(nn.Module):
    def __init__(self, config: ImageEncoderConfig, embed_dim: int) -> None:
        super().__init__()
        channels = config.channels
        stages: list[nn.Module] = [nn.Conv2d(3, channels[0], 3, padding=1)]
        for c_in, c_out in itertools.pairwise(channels):
            stages.append(downsample_block(c_in, c_out))
        self.features = nn.Sequential(*stages)
        self.head = nn.Sequential(
            nn.LeakyReLU(0.2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels[-1], embed_dim)
        )

    def forward(self, image: Tensor) -> Tensor:
        """Shapes: image [B, 3, H, W] in [-1, 1] -> [B, d]."""
        return self.head(self.features(image))
