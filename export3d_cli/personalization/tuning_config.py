"""How a photo is personalised (``personalization.tuning``); no torch import, so the CLI can read the defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from export3d_cli.config import EXPRESSION_PLANE_COORDINATES
from export3d_cli.errors import UsageError

# What a personalisation produces for a given photo, face, base weights and steps. Bump it with any change to the
# personal set or the tuning: cached results of another version are then made anew instead of reused.
PERSONALIZATION_VERSION = 2


@dataclass(frozen=True)
class TuningConfig:
    steps: int = 300
    batch: int = 4
    lr: float = 3e-4  # decoder, SR (and G)
    triplane_lr: float = 1e-2  # the personal tri-planes, fitted directly like an optimised tri-plane
    ssim_weight: float = 0.5
    direction_decay: float = 1e-3  # L2 on the expression directions: what the set does not constrain stays zero
    seed: int = 0
    set_size: int = 48  # warped expressions in the personal set (plus the photo)
    tune_generator: bool = False
    coordinates: str = "clebs"  # what the person's directions read: β′ (CLeBS coefficients) or "blendshapes" (β)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise UsageError(f"--steps must be at least 1, got {self.steps}")
        if self.batch < 1:
            raise UsageError(f"--batch must be at least 1, got {self.batch}")
        for name in ("lr", "triplane_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number > 0, got {value}")
        if self.coordinates not in EXPRESSION_PLANE_COORDINATES:
            raise UsageError(
                f"--coordinates must be {' or '.join(EXPRESSION_PLANE_COORDINATES)}, got {self.coordinates!r}"
            )
        if self.set_size < 0:
            raise UsageError(f"--set-size must be 0 or more, got {self.set_size}")
