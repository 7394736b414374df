"""The range of expression coefficients the generator was trained on, and keeping a driver within it.

G's EAdaLN modulations and the expression tri-planes (linear in the coefficients) only ever saw the CLeBS
coefficients λ of their training frames. A real driver mapped onto a photo (``--expression relative``) leaves that
range often: on a held-out photo (face-api sample 6) driven by the real Carphone clip, 34% of the frames had a
coefficient outside the training frames' 0.5–99.5% quantiles, down to −6 standard deviations where training
reached −3, and those are the frames that break up into patches. At inference (``Animator``) each λ_i is
therefore clamped into [low_i, high_i], widened to include the photo's own λ so that a photo is always rendered
with its own expression. Training and ``evaluate`` see the coefficients unclamped: the range is a property of
the training data, applied where a driver comes from outside it.

Why quantiles and not the extremes: a handful of training frames reach far (the min/max box changed nothing in
the measurement above), while what G learnt well is where most frames are.

Stored in config.json beside ``"config"`` as ``"expression_range"``, not inside it: the weights' identity
(``weights_sha256``, which personalised files are keyed by) stays the same, and weights without it render
unclamped, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from export3d_cli.errors import WeightsError

RANGE_KEY = "expression_range"
TAIL = 0.005  # the share of training frames left outside on each side of every coefficient


@dataclass(frozen=True)
class ExpressionRange:
    low: tuple[float, ...]  # [n] lowest λ_i kept
    high: tuple[float, ...]  # [n] highest λ_i kept
    frames: int  # training frames it was measured on
    tail: float = TAIL

    def clamp(self, coefficients: Tensor, keep: Tensor | None = None) -> Tensor:
        """λ [B, n] clamped into the range, widened to include ``keep`` λ [n] or [1, n] (the photo's own)."""
        low = torch.tensor(self.low, dtype=coefficients.dtype, device=coefficients.device)
        high = torch.tensor(self.high, dtype=coefficients.dtype, device=coefficients.device)
        if keep is not None:
            keep = keep.reshape(-1).to(coefficients)
            low, high = torch.minimum(low, keep), torch.maximum(high, keep)
        return coefficients.clamp(low, high)

    def to_json(self) -> dict:
        return {"low": list(self.low), "high": list(self.high), "frames": self.frames, "tail": self.tail}

    @classmethod
    def from_json(cls, entry: object, size: int, where: str) -> ExpressionRange:
        """Validated: two lists of ``size`` finite numbers with low <= high; WeightsError naming ``where``."""
        if not isinstance(entry, dict):
            raise WeightsError(f"{where}: '{RANGE_KEY}' must be an object")
        bounds = []
        for key in ("low", "high"):
            values = entry.get(key)
            if (
                not isinstance(values, list)
                or len(values) != size
                or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
            ):
                raise WeightsError(f"{where}: {RANGE_KEY}.{key} must be a list of {size} finite numbers")
            bounds.append(tuple(float(v) for v in values))
        low, high = bounds
        if any(a > b for a, b in zip(low, high, strict=True)):
            raise WeightsError(f"{where}: {RANGE_KEY}.low must not exceed {RANGE_KEY}.high")
        frames = entry.get("frames", 0)
        tail = entry.get("tail", TAIL)
        if not isinstance(frames, int) or isinstance(frames, bool) or frames < 0:
            raise WeightsError(f"{where}: {RANGE_KEY}.frames must be a whole number >= 0")
        if not isinstance(tail, int | float) or isinstance(tail, bool) or not 0 <= tail < 0.5:
            raise WeightsError(f"{where}: {RANGE_KEY}.tail must be a number in [0, 0.5)")
        return cls(low, high, frames, float(tail))


@torch.no_grad()
def measure_expression_range(encoder: torch.nn.Module, expressions: Tensor, tail: float = TAIL) -> ExpressionRange:
    """The [tail, 1 − tail] quantiles of the coefficients λ of training frames β [N, E] (N >= 2)."""
    if expressions.shape[0] < 2:
        raise ValueError(f"need at least 2 frames to measure an expression range, got {expressions.shape[0]}")
    coefficients = encoder.coefficients_of(expressions.to(encoder.weight)).double()
    low = torch.quantile(coefficients, tail, dim=0)
    high = torch.quantile(coefficients, 1.0 - tail, dim=0)
    return ExpressionRange(tuple(low.tolist()), tuple(high.tolist()), int(expressions.shape[0]), tail)


def read_expression_range(payload: dict, size: int, where: str) -> ExpressionRange | None:
    """The range in a parsed config.json (None when it has none)."""
    entry = payload.get(RANGE_KEY)
    return None if entry is None else ExpressionRange.from_json(entry, size, where)


def with_expression_range(payload: dict, expression_range: ExpressionRange | None) -> dict:
    """config.json's object with the range set (or removed for None)."""
    payload = {key: value for key, value in payload.items() if key != RANGE_KEY}
    if expression_range is not None:
        payload[RANGE_KEY] = expression_range.to_json()
    return payload
