"""Residual 3x3 conv block used by the conv stem, the tri-plane head and super-resolution."""

from __future__ import annotations

from torch import Tensor, nn


class ResidualConvBlock(nn.Module):
    """x + conv(act(conv(act(x)))), with a 1x1 projection when the width changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Shapes: [B, C_in, H, W] -> [B, C_out, H, W]."""
        return self.skip(x) + self.body(x)


def downsample_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Stride-2 conv then a residual block: [B, C_in, H, W] -> [B, C_out, H/2, W/2]."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1),
        ResidualConvBlock(out_channels, out_channels),
    )
