"""EAdaLN-ViT block (paper Fig. 3): EAdaLN before self-attention and before the Mix-FFN.

    x = x + g1 * MSA(EAdaLN(x, beta'))        (shift1, scale1, g1 from beta')
    x = x + g2 * MixFFN(EAdaLN(x, beta'))     (shift2, scale2, g2 from beta')

All six modulation vectors are zero at initialisation (adaLN-Zero), so the
block is exactly the identity until training moves them.
"""

from __future__ import annotations

from torch import Tensor, nn

from export3d_cli.layers.attention import SelfAttention
from export3d_cli.layers.eadaln import EAdaLN, ExpressionModulation
from export3d_cli.layers.mix_ffn import MixFFN


class EAdaLNViTBlock(nn.Module):
    def __init__(
        self, width: int, heads: int, embed_dim: int, mlp_ratio: float = 4.0, spatial_reduction: int = 1
    ) -> None:
        super().__init__()
        self.norm1 = EAdaLN(width)
        self.attn = SelfAttention(width, heads, spatial_reduction)
        self.norm2 = EAdaLN(width)
        self.ffn = MixFFN(width, int(width * mlp_ratio))
        self.modulation = ExpressionModulation(embed_dim, width, chunks=6)

    def forward(self, x: Tensor, expression: Tensor, height: int, width: int) -> Tensor:
        """Shapes: x [B, T, C], expression beta' [B, d] -> [B, T, C]."""
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(expression)  # each [B, C]
        x = x + gate1.unsqueeze(1) * self.attn(self.norm1(x, shift1, scale1), height, width)
        return x + gate2.unsqueeze(1) * self.ffn(self.norm2(x, shift2, scale2), height, width)
