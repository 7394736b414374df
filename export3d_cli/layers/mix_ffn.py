"""Mix-FFN (SegFormer): Linear -> 3x3 depth-wise conv on the token grid -> GELU -> Linear.

The depth-wise conv gives the tokens positional information, so the ViT
needs no positional embedding and works at any grid size.
"""

from __future__ import annotations

from torch import Tensor, nn


class MixFFN(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor, height: int, width: int) -> Tensor:
        """Shapes: x [B, T, C] with T = height * width -> [B, T, C]."""
        b = x.shape[0]
        h = self.fc1(x)  # [B, T, H]
        h = self.dwconv(h.transpose(1, 2).reshape(b, -1, height, width)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(h))
