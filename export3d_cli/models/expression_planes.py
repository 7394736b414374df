"""Expression tri-planes: one per-texel tri-plane direction per CLeBS basis vector, shared by every identity.

    z  = (β′ V − mean) / std            the standardised CLeBS coefficients [B, n]
    ΔT = Σ_k z_k D_k                    [B, 3, C, R/2, R/2], added to G's tri-plane (after T_EMA)

Why (``docs/expression-control-diagnosis.md``): G's tri-plane is an upsampled ViT output, and in the training a CPU
affords it learns colour and shape but not a mouth that opens — fitted to one closed and one open frame for 400
steps it still shows neither, at any learning rate, while the same loss applied to tri-plane values directly opens
the mouth in 150 steps. The directions D_k give expression that per-texel freedom. They live in the canonical head
space of the tri-plane, where a mouth or an eye is at about the same place for every synthetic head, so one set of
directions serves all identities; G still supplies the person and the pose. Measured on held-out synthetic
identities of the bundled model's training set, fitting only D (the rest frozen, 400 steps): the output's jawOpen
moves by +0.20 when the driver's goes 0 → 1 (G alone: +0.02).

V, mean and std are buffers fixed when the directions are fitted (CLeBS is frozen by then), so the module needs
nothing from the encoder at run time. Zero directions (the default) change nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ExpressionPlanes(nn.Module):
    def __init__(self, embed_dim: int, count: int, plane_shape: tuple[int, ...]) -> None:
        """``embed_dim`` d of β′, ``count`` n of directions (the CLeBS basis size), plane_shape (3, C, H, W)."""
        super().__init__()
        self.directions = nn.Parameter(torch.zeros(count, *plane_shape))
        self.register_buffer("basis", torch.zeros(embed_dim, count))
        self.register_buffer("coefficient_mean", torch.zeros(count))
        self.register_buffer("coefficient_std", torch.ones(count))

    @torch.no_grad()
    def set_coordinates(self, basis: Tensor, coefficients: Tensor) -> None:
        """Fix V [d, n] and the standardisation from the coefficients λ = β′ V of training frames [N, n]."""
        self.basis.copy_(basis)
        self.coefficient_mean.copy_(coefficients.mean(dim=0))
        self.coefficient_std.copy_(coefficients.std(dim=0).clamp_min(1e-6))

    def coordinates(self, embedding: Tensor) -> Tensor:
        """z [B, n] for β′ [B, d]."""
        return (embedding @ self.basis - self.coefficient_mean) / self.coefficient_std

    def forward(self, embedding: Tensor) -> Tensor:
        """Shapes: β′ [B, d] -> tri-plane offset [B, 3, C, H, W]."""
        z = self.coordinates(embedding)
        return (z @ self.directions.flatten(1)).view(-1, *self.directions.shape[1:])
