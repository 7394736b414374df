"""A person's own tri-planes, added to G's output: P(β′) = T_person + Σ_k u_k B_k.

Why not only fine-tune G: its tri-plane is an upsampled ViT output, and in a few hundred steps it learns colour and
shape but not the eyes, the teeth or the lips (measured: a face is recovered at 23 dB, its smile is not). A
tri-plane optimised directly gets that detail in ~150 steps (``tools/diagnose_expression_control.py
--only representable``). So the person's appearance goes into a tri-plane of its own, T_person, and how their face
changes with expression into one tri-plane direction B_k per CLeBS basis vector, weighted by how far the driving
expression's coefficient is from the photo's:

    z = Vᵀ β′                      the CLeBS coefficient (λ, or its standardised z) — V has orthonormal columns
    u = (z − z_photo) / spread     0 for the photo's own expression, ~±1 over the personal set
    P = T_person + Σ_k u_k B_k     [3, C, R/2, R/2]

so the photo itself is reproduced by T_person alone and every expression moves the face along directions learnt
from the personal set, as the face pipeline measured it. The CLeBS basis is the paper's expression space; the
person's directions live in it, so ``sweep-basis`` edits a personalised face along the same vectors.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from export3d_cli.errors import InputError, UsageError
from export3d_cli.models.export3d import Export3D

SPREAD_FLOOR = 1e-3  # a coefficient the personal set never moves gets no direction blown up from noise


class PersonalTriplanes(nn.Module):
    def __init__(
        self, basis: Tensor, anchor: Tensor, spread: Tensor, reach: Tensor, plane_shape: tuple[int, ...]
    ) -> None:
        """basis V [d, n]; anchor z_photo [n]; spread [n]; reach [2, n] (lowest, highest u in the personal set);
        plane_shape (3, C, H, W)."""
        super().__init__()
        self.register_buffer("basis", basis.detach().clone())
        self.register_buffer("anchor", anchor.detach().clone())
        self.register_buffer("spread", spread.detach().clamp_min(SPREAD_FLOOR).clone())
        self.register_buffer("reach", reach.detach().clone())
        self.identity = nn.Parameter(torch.zeros(1, *plane_shape))
        self.directions = nn.Parameter(torch.zeros(basis.shape[1], *plane_shape))

    def coordinates(self, embedding: Tensor) -> Tensor:
        """u [B, n] for β′ [B, d], kept within what the personal set showed: a linear model extrapolated past its
        data paints noise where the set never constrained it."""
        u = (embedding @ self.basis - self.anchor) / self.spread
        return torch.maximum(torch.minimum(u, self.reach[1]), self.reach[0])

    def forward(self, embedding: Tensor) -> Tensor:
        """Shapes: β′ [B, d] -> tri-plane offset [B, 3, C, H, W]."""
        u = self.coordinates(embedding)
        return self.identity + torch.einsum("bn,nchw->bchw", u, self.directions.flatten(1, 2)).view(
            -1, *self.directions.shape[1:]
        )


def attach(model: Export3D, photo_embedding: Tensor, set_embeddings: Tensor) -> PersonalTriplanes:
    """Give ``model`` zero personal tri-planes anchored at the photo's β′ [d], scaled by the set's spread [N, d]."""
    encoder = model.expression_encoder
    if not hasattr(encoder, "basis"):
        raise UsageError("personalisation needs a CLeBS expression encoder (this model uses the direct ablation)")
    with torch.no_grad():
        basis = encoder.basis()
        coordinates = set_embeddings @ basis
        anchor = photo_embedding.reshape(1, -1) @ basis
        spread = coordinates.std(dim=0) if len(coordinates) > 1 else torch.ones(basis.shape[1])
        u = (coordinates - anchor) / spread.clamp_min(SPREAD_FLOOR)
        reach = torch.stack([u.min(dim=0).values, u.max(dim=0).values])
    plane_shape = tuple(model.generator.triplane_ema.shape[1:])
    personal = PersonalTriplanes(basis, anchor[0], spread, reach, plane_shape).to(basis.device)
    model.personal = personal
    return personal


STORED = ("identity", "directions", "anchor", "spread", "reach")


def attach_stored(model: Export3D, tensors: dict[str, Tensor], name: str) -> PersonalTriplanes:
    """Personal tri-planes rebuilt from a file's ``personal.*`` tensors; InputError naming ``name`` if they do not
    fit ``model``. Returned, not yet attached (the caller attaches once every check has passed)."""
    missing = [key for key in STORED if key not in tensors]
    if missing:
        raise InputError(f"{name}: personal tri-planes incomplete (no {', '.join(missing)})")
    encoder = model.expression_encoder
    if not hasattr(encoder, "basis"):
        raise InputError(f"{name}: personalised for a CLeBS model, this one uses the direct ablation")
    with torch.no_grad():
        basis = encoder.basis()
    count = basis.shape[1]
    plane_shape = tuple(model.generator.triplane_ema.shape[1:])
    expected = {
        "identity": (1, *plane_shape),
        "directions": (count, *plane_shape),
        "anchor": (count,),
        "spread": (count,),
        "reach": (2, count),
    }
    for key, shape in expected.items():
        value = tensors[key]
        if tuple(value.shape) != shape or not torch.isfinite(value).all():
            raise InputError(f"{name}: personal {key} has shape {tuple(value.shape)}, this model needs {shape}")
    personal = PersonalTriplanes(
        basis, tensors["anchor"].float(), tensors["spread"].float(), tensors["reach"].float(), plane_shape
    )
    with torch.no_grad():
        personal.identity.copy_(tensors["identity"].float())
        personal.directions.copy_(tensors["directions"].float())
    personal.requires_grad_(False)
    return personal.to(basis.device)
