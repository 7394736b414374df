"""Expression Adaptive Layer Normalization, paper §3.2 Eq. (5).

    EAdaLN(x, beta') = sigma(beta') * LN(x) + mu(beta')

LN has no affine parameters of its own; sigma and mu are linear maps of beta'
through a SiLU (DiT's adaLN). sigma is parameterised as 1 + s, and the linear
map producing (s, mu) -- plus the residual gates that DiT's adaLN-Zero adds --
is zero-initialised so that a block starts as the identity.
"""

from __future__ import annotations

from torch import Tensor, nn


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """sigma * x + mu with sigma = 1 + scale. Shapes: x [B, T, C], shift/scale [B, C]."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class EAdaLN(nn.Module):
    """Affine-free LayerNorm modulated by the expression code (Eq. 5)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)

    def forward(self, x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
        """Shapes: x [B, T, C], shift/scale [B, C] -> [B, T, C]."""
        return modulate(self.norm(x), shift, scale)


class ExpressionModulation(nn.Module):
    """beta' -> ``chunks`` vectors of size ``width`` (shift, scale, gate, ...), zero at init."""

    def __init__(self, embed_dim: int, width: int, chunks: int) -> None:
        super().__init__()
        self.chunks = chunks
        self.proj = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, chunks * width))
        nn.init.zeros_(self.proj[1].weight)
        nn.init.zeros_(self.proj[1].bias)

    def forward(self, expression: Tensor) -> tuple[Tensor, ...]:
        """Shapes: expression [B, d] -> ``chunks`` tensors [B, width]."""
        return self.proj(expression).chunk(self.chunks, dim=-1)
