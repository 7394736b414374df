"""Expression tri-planes: one per-texel tri-plane direction per expression coordinate, shared by every identity.

    z  = (x V − mean) / std             n standardised coordinates of the expression [B, n]
    ΔT = Σ_k z_k D_k                    [B, 3, C, R/2, R/2], added to G's tri-plane (after T_EMA)

Two choices of coordinates (``GeneratorConfig.expression_planes_coordinates``, ``reads``):

- ``"clebs"``: x = β′ and V the CLeBS basis, so z are the CLeBS coefficients (the bundled planes).
- ``"blendshapes"``: x = β and V its n leading principal directions over the training frames. The CLeBS
  coefficients keep less of the smile (held-out linear read-back R² 0.72; jaw 0.94, blink 0.89, brow 0.93) than 10
  principal components of β do (0.999; 0.98, 0.92, 0.98). Fitted the same way, the output responds more to every
  signal when only it changes (1,200 steps: jaw +0.28, smile +0.03, blink +0.20, brow +0.15 against +0.20, +0.00,
  +0.13, +0.06), but against a driver the jaw follows less (r 0.60 against 0.69) and the smile no better, and across
  identities CSIM and AED are worse — raw β carries the driver's appearance, which CLeBS exists to drop — so the
  bundled planes stay on CLeBS (docs/expression-control-diagnosis.md). G's own path is the paper's either way.

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


def planes_input(reads: str, embedding: Tensor, blendshapes: Tensor | None) -> Tensor:
    """What planes that read ``reads`` take: β′ [B, d] ("clebs") or β [B, E] ("blendshapes", which must be given)."""
    if reads != "blendshapes":
        return embedding
    if blendshapes is None:
        raise ValueError("these tri-planes read beta: pass the blendshapes along with beta'")
    return blendshapes


def principal_directions(samples: Tensor, count: int) -> Tensor:
    """The ``count`` leading principal directions of ``samples`` [N, E] as orthonormal columns [E, count]."""
    centred = samples - samples.mean(dim=0)
    return torch.linalg.svd(centred, full_matrices=False).Vh[:count].T.contiguous()


class ExpressionPlanes(nn.Module):
    def __init__(self, input_dim: int, count: int, plane_shape: tuple[int, ...], reads: str = "clebs") -> None:
        """``input_dim``: d of β′ (``reads="clebs"``) or E of β (``"blendshapes"``); ``count`` n of directions (the
        CLeBS basis size), plane_shape (3, C, H, W)."""
        super().__init__()
        self.reads = reads
        self.directions = nn.Parameter(torch.zeros(count, *plane_shape))
        self.register_buffer("basis", torch.zeros(input_dim, count))
        self.register_buffer("coefficient_mean", torch.zeros(count))
        self.register_buffer("coefficient_std", torch.ones(count))

    @torch.no_grad()
    def set_coordinates(self, basis: Tensor, coefficients: Tensor) -> None:
        """Fix V [input_dim, n] and the standardisation from the coefficients x V of training frames [N, n]."""
        self.basis.copy_(basis)
        self.coefficient_mean.copy_(coefficients.mean(dim=0))
        self.coefficient_std.copy_(coefficients.std(dim=0).clamp_min(1e-6))

    def coordinates(self, expression: Tensor) -> Tensor:
        """z [B, n] for x [B, input_dim] (β′ or β, as ``reads`` says)."""
        return (expression @ self.basis - self.coefficient_mean) / self.coefficient_std

    def forward(self, expression: Tensor) -> Tensor:
        """Shapes: x [B, input_dim] (β′ or β) -> tri-plane offset [B, 3, C, H, W]."""
        z = self.coordinates(expression)
        return (z @ self.directions.flatten(1)).view(-1, *self.directions.shape[1:])
