"""Multi-head self-attention over a token grid, with SegFormer's optional spatial reduction.

With ``spatial_reduction`` r > 1, keys and values come from the grid shrunk by
a stride-r conv and a LayerNorm, so attention at high token counts costs
T * T / r² instead of T².
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, spatial_reduction: int = 1) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)
        if spatial_reduction > 1:
            self.reduce: nn.Module = nn.Conv2d(width, width, spatial_reduction, stride=spatial_reduction)
            self.reduce_norm: nn.Module = nn.LayerNorm(width)
        else:
            self.reduce = nn.Identity()
            self.reduce_norm = nn.Identity()

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """Shapes: x [B, T, C] with T = height * width -> [B, T, C]."""
        b, t, c = x.shape
        q = self.q(x).reshape(b, t, self.heads, c // self.heads).transpose(1, 2)  # [B, h, T, c/h]
        grid = x.transpose(1, 2).reshape(b, c, height, width)
        context = self.reduce_norm(self.reduce(grid).flatten(2).transpose(1, 2))  # [B, T', C]
        kv = self.kv(context).reshape(b, -1, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, kv[0], kv[1])  # [B, h, T, c/h]
        return self.proj(out.transpose(1, 2).reshape(b, t, c))
