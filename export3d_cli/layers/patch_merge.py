"""Overlap patch merge (SegFormer): a strided conv with an overlapping kernel, then LayerNorm."""

from __future__ import annotations

from torch import Tensor, nn


class OverlapPatchMerge(nn.Module):
    """Halves the grid: [B, C_in, H, W] -> tokens [B, H/2 * W/2, C_out] (kernel 3, stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(out_channels)

    def forward(self, x: Tensor) -> tuple[Tensor, int, int]:
        """Returns tokens [B, T, C_out] and the grid height and width."""
        x = self.proj(x)  # [B, C_out, H', W']
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w
