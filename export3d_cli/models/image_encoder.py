"""Image encoder f_I of Eq. (1): a face image -> R^d, used only to pre-train CLeBS; thrown away after (paper §3.1).

Two ways to look at the image:

- ``ImageEncoder`` (pixels, as the paper): a plain strided conv network with global average pooling on the
  aligned crop.
- ``LandmarkEncoder``: an MLP on the face pipeline's 478 landmarks of the same frame, each frame's landmarks
  centred and scaled to unit RMS radius. Within one clip (one person, one appearance) the landmarks change only
  with expression and head pose, which is exactly what Eq. (1) needs f_I to see; the pixel network has to find
  that in 16 nearly identical crops per step and, at a CPU budget, stayed at chance (5.7–8.6% frame↔β retrieval
  against 6.25% after 750–1,500 steps; docs/expression-control-diagnosis.md).

Each says which field of a ``FrameBatch`` it reads (``reads``).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from export3d_cli.config import ImageEncoderConfig
from export3d_cli.layers.conv_block import downsample_block


class ImageEncoder(nn.Module):
    reads = "images"

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


class LandmarkEncoder(nn.Module):
    """Landmarks [B, L, 2] (any pixel scale) -> [B, d]: normalised per frame, then an MLP."""

    reads = "landmarks"

    def __init__(self, landmarks: int, embed_dim: int, hidden: int = 256) -> None:
        super().__init__()
        layers = [nn.Linear(2 * landmarks, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, embed_dim))

    @staticmethod
    def normalised(landmarks: Tensor) -> Tensor:
        """Each frame's landmarks minus their centroid, divided by their RMS distance from it. [B, L, 2] -> same."""
        centred = landmarks - landmarks.mean(dim=1, keepdim=True)
        radius = centred.square().sum(dim=-1).mean(dim=1, keepdim=True).sqrt().clamp_min(1e-6)
        return centred / radius.unsqueeze(-1)

    def forward(self, landmarks: Tensor) -> Tensor:
        """Shapes: landmarks [B, L, 2] -> [B, d]."""
        return self.net(self.normalised(landmarks.to(torch.float32)).flatten(1))
