"""A person's own tri-planes, added to G's output: P = T_person + Σ_k u_k B_k.

Why not only fine-tune G: its tri-plane is an upsampled ViT output, and in a few hundred steps it learns colour and
shape but not the eyes, the teeth or the lips (measured: a face is recovered at 23 dB, its smile is not). A
tri-plane optimised directly gets that detail in ~150 steps (``tools/diagnose_expression_control.py
--only representable``). So the person's appearance goes into a tri-plane of its own, T_person, and how their face
changes with expression into one tri-plane direction B_k per CLeBS basis vector, weighted by how far the driving
expression's coefficient is from the photo's:

    z = Vᵀ x                       x's coordinates — V has orthonormal columns
    u = (z − z_photo) / spread     0 for the photo's own expression, ~±1 over the personal set
    P = T_person + Σ_k u_k B_k     [3, C, R/2, R/2]

so the photo itself is reproduced by T_person alone and every expression moves the face along directions learnt
from the personal set, as the face pipeline measured it. Two choices of x and V (``reads``; the same choice as for
the shared expression tri-planes, ``models/expression_planes.py``):

- ``"clebs"`` (the default): x = β′ and V the CLeBS basis, the paper's expression space, so ``sweep-basis`` edits
  a personalised face along the same vectors. V comes from the model; the file holds no basis.
- ``"blendshapes"`` (``export3d personalize --coordinates blendshapes``): x = β and V the n leading principal
  directions of the personal set's β, stored with the person's file. The CLeBS coefficients move almost oppositely
  for a smile and raised brows, which directions linear in them cannot keep apart; β's components do. Measured on
  three held-out real photos the result was mixed (brows follow better, the turned face is found less often;
  docs/personalization.md), so it is not the default.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from export3d_cli.config import EXPRESSION_PLANE_COORDINATES
from export3d_cli.errors import InputError, UsageError
from export3d_cli.models.export3d import Export3D
from export3d_cli.models.expression_planes import principal_directions

SPREAD_FLOOR = 1e-3  # a coefficient the personal set never moves gets no direction blown up from noise


class PersonalTriplanes(nn.Module):
    def __init__(
        self,
        basis: Tensor,
        anchor: Tensor,
        spread: Tensor,
        reach: Tensor,
        plane_shape: tuple[int, ...],
        reads: str = "clebs",
    ) -> None:
        """basis V [d or E, n]; anchor z_photo [n]; spread [n]; reach [2, n] (lowest, highest u in the personal
        set); plane_shape (3, C, H, W); ``reads`` "clebs" (x = β′) or "blendshapes" (x = β)."""
        super().__init__()
        if reads not in EXPRESSION_PLANE_COORDINATES:
            raise ValueError(f"reads must be one of {EXPRESSION_PLANE_COORDINATES}, got {reads!r}")
        self.reads = reads
        self.register_buffer("basis", basis.detach().clone())
        self.register_buffer("anchor", anchor.detach().clone())
        self.register_buffer("spread", spread.detach().clamp_min(SPREAD_FLOOR).clone())
        self.register_buffer("reach", reach.detach().clone())
        self.identity = nn.Parameter(torch.zeros(1, *plane_shape))
        self.directions = nn.Parameter(torch.zeros(basis.shape[1], *plane_shape))

    def coordinates(self, expression: Tensor) -> Tensor:
        """u [B, n] for x [B, d or E], kept within what the personal set showed: a linear model extrapolated past
        its data paints noise where the set never constrained it."""
        u = (expression @ self.basis - self.anchor) / self.spread
        return torch.maximum(torch.minimum(u, self.reach[1]), self.reach[0])

    def forward(self, expression: Tensor) -> Tensor:
        """Shapes: x [B, d or E] (β′ or β, as ``reads`` says) -> tri-plane offset [B, 3, C, H, W]."""
        u = self.coordinates(expression)
        return self.identity + torch.einsum("bn,nchw->bchw", u, self.directions.flatten(1, 2)).view(
            -1, *self.directions.shape[1:]
        )


def attach(model: Export3D, photo: Tensor, personal_set: Tensor, reads: str = "clebs") -> PersonalTriplanes:
    """Give ``model`` zero personal tri-planes anchored at the photo's x, scaled by the set's spread: x = β [E]
    and the set's β [N, E] (``reads="blendshapes"``), or β′ [d] and [N, d] (``"clebs"``)."""
    encoder = model.expression_encoder
    if not hasattr(encoder, "basis"):
        raise UsageError("personalisation needs a CLeBS expression encoder (this model uses the direct ablation)")
    with torch.no_grad():
        basis = encoder.basis()
        if reads == "blendshapes":
            # As many principal directions of the set's β as CLeBS has basis vectors (the files stay the same size).
            basis = principal_directions(personal_set, basis.shape[1])  # [E, n]
        coordinates = personal_set @ basis
        anchor = photo.reshape(1, -1) @ basis
        spread = coordinates.std(dim=0) if len(coordinates) > 1 else torch.ones(basis.shape[1])
        u = (coordinates - anchor) / spread.clamp_min(SPREAD_FLOOR)
        reach = torch.stack([u.min(dim=0).values, u.max(dim=0).values])
    plane_shape = tuple(model.generator.triplane_ema.shape[1:])
    personal = PersonalTriplanes(basis, anchor[0], spread, reach, plane_shape, reads).to(basis.device)
    model.personal = personal
    return personal


STORED = ("identity", "directions", "anchor", "spread", "reach")  # + "basis" when they read β


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
    reads = "clebs"
    if "basis" in tensors:  # the principal directions of the person's set: x = β
        reads = "blendshapes"
        expression_dim = model.config.expression.expression_dim
        basis = tensors["basis"].float().to(basis.device)
        if tuple(basis.shape) != (expression_dim, count) or not torch.isfinite(basis).all():
            raise InputError(
                f"{name}: personal basis has shape {tuple(basis.shape)}, this model needs {(expression_dim, count)}"
            )
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
        basis, tensors["anchor"].float(), tensors["spread"].float(), tensors["reach"].float(), plane_shape, reads
    )
    with torch.no_grad():
        personal.identity.copy_(tensors["identity"].float())
        personal.directions.copy_(tensors["directions"].float())
    personal.requires_grad_(False)
    return personal.to(basis.device)
