"""AED and expression_r: does the generated face make the driver's expression?

- **AED** (average expression distance): mean over frame pairs of the mean
  absolute difference of the 52 MediaPipe blendshape scores β (each in [0, 1]).
  The paper's AED compares 3DMM expression coefficients of a face-reconstruction
  network; ours compares the parameters the model is driven by, measured by the
  same face pipeline on both sides. 0 = identical expressions.
- **expression_r**: Pearson r over time between generated and driving frames
  for four signals a viewer notices — jaw (jawOpen), smile (mean of
  mouthSmileLeft/Right), blink (mean of eyeBlinkLeft/Right) and brow
  (browInnerUp). r is scale-free: it says whether the face moves *when* the
  driver moves, not how far (compare the spreads for that). Not in the paper.

Pairs where either frame has no face are left out by the caller.
"""

from __future__ import annotations

import numpy as np

from export3d_cli.face.blendshapes import BLENDSHAPE_INDEX

# Each signal is the mean of these blendshapes.
EXPRESSION_SIGNALS: dict[str, tuple[str, ...]] = {
    "jaw": ("jawOpen",),
    "smile": ("mouthSmileLeft", "mouthSmileRight"),
    "blink": ("eyeBlinkLeft", "eyeBlinkRight"),
    "brow": ("browInnerUp",),
}
MIN_PAIRS_FOR_R = 3


def average_expression_distance(generated: np.ndarray, driving: np.ndarray) -> float | None:
    """AED of β [T, 52] against β [T, 52]; None for no pairs."""
    generated, driving = np.asarray(generated, np.float64), np.asarray(driving, np.float64)
    if generated.shape != driving.shape:
        raise ValueError(f"expression shapes differ: {generated.shape} vs {driving.shape}")
    if len(generated) == 0:
        return None
    return float(np.abs(generated - driving).mean())


def expression_signal(expression: np.ndarray, signal: str) -> np.ndarray:
    """One of EXPRESSION_SIGNALS over time: β [T, 52] -> [T]."""
    columns = [BLENDSHAPE_INDEX[name] for name in EXPRESSION_SIGNALS[signal]]
    return np.asarray(expression, np.float64)[:, columns].mean(axis=1)


def pearson_r(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson correlation of two series [T]; None when undefined (fewer than 3 pairs or a constant series)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < MIN_PAIRS_FOR_R:
        return None
    x, y = x - x.mean(), y - y.mean()
    norm = float(np.sqrt((x * x).sum() * (y * y).sum()))
    # A series that does not move (to float precision) has no defined correlation.
    if norm <= 1e-12:
        return None
    return float(np.clip((x * y).sum() / norm, -1.0, 1.0))


def expression_correlations(generated: np.ndarray, driving: np.ndarray) -> dict[str, float | None]:
    """expression_r for every signal: β [T, 52] (generated) against β [T, 52] (driving)."""
    return {
        signal: pearson_r(expression_signal(generated, signal), expression_signal(driving, signal))
        for signal in EXPRESSION_SIGNALS
    }
