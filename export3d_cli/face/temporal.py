"""Temporal smoothing and gap filling for per-frame signals (landmarks, poses, expression codes).

Per-frame face tracking jitters, and a jittering driving signal makes the animated portrait shimmer. The
One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) is the usual cure for interactive tracking: a first-order
low-pass whose cutoff rises with the signal's speed, so slow motion is smoothed hard while fast motion keeps
up with little lag. It is causal, so the same code serves a file and a live stream.

Frames where the tracker lost the face are filled first (:func:`fill_gaps`): a causal filter would carry a
hole's garbage into every later frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["OneEuroConfig", "fill_gaps", "one_euro_filter"]


@dataclass(frozen=True)
class OneEuroConfig:
    """One-Euro parameters.

    ``min_cutoff`` (Hz) is the cutoff at rest: lower removes more jitter and adds more lag when slow.
    ``beta`` (s/unit) raises the cutoff by ``beta * |speed|`` in the signal's units per second: higher lags less
    on fast motion. ``d_cutoff`` (Hz) smooths the speed estimate itself.
    """

    min_cutoff: float = 1.0
    beta: float = 0.0
    d_cutoff: float = 1.0


def one_euro_filter(
    values: np.ndarray, fps: float, config: OneEuroConfig, times: np.ndarray | None = None
) -> np.ndarray:
    """Filter each column of ``values: [T, D]`` with a causal One-Euro filter sampled at ``fps``; returns ``[T, D]``.

    ``times`` [T] (seconds, strictly increasing) gives each sample its own moment, as in a variable-frame-rate
    video: each step then uses its own interval, as the One-Euro filter is defined (a sample after a stall moves
    further towards the new value than one a frame later would). The first row passes unchanged (the filter
    starts at rest on it). Floating-point input keeps its dtype; other input comes back as float64. Values must
    be finite: fill gaps first, since a NaN would propagate into every later frame.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"values must be [T, D], got shape {values.shape}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not (config.min_cutoff > 0 and config.d_cutoff > 0 and config.beta >= 0):
        raise ValueError(f"need min_cutoff > 0, d_cutoff > 0 and beta >= 0, got {config}")
    if not np.isfinite(values).all():
        raise ValueError("values contain NaN or infinity; fill gaps before filtering")
    out_dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.dtype(np.float64)
    if len(values) == 0:
        return values.astype(out_dtype)

    if times is not None:
        times = np.asarray(times, dtype=np.float64)
        if times.shape != (len(values),) or not np.isfinite(times).all() or not (np.diff(times) > 0).all():
            raise ValueError(f"times must be {len(values)} finite, strictly increasing seconds")
    # Accumulate in float64 whatever the input: the recursion runs over thousands of frames.
    signal = values.astype(np.float64)
    period = 1.0 / fps
    derivative_alpha = _smoothing_factor(config.d_cutoff, period)
    out = np.empty_like(signal)
    out[0] = estimate = signal[0]
    speed = np.zeros(signal.shape[1])
    for t in range(1, len(signal)):
        if times is not None:
            period = float(times[t] - times[t - 1])
            derivative_alpha = _smoothing_factor(config.d_cutoff, period)
        # Speed against the previous *filtered* value, as in the paper's pseudocode: differencing raw samples
        # would feed the very jitter being removed into the cutoff.
        speed += derivative_alpha * ((signal[t] - estimate) / period - speed)
        alpha = _smoothing_factor(config.min_cutoff + config.beta * np.abs(speed), period)
        estimate = estimate + alpha * (signal[t] - estimate)
        out[t] = estimate
    return out.astype(out_dtype, copy=False)


def fill_gaps(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace the rows of ``values: [T, D]`` where ``valid: [T]`` is False; returns a new ``[T, D]`` array.

    A gap between valid rows is filled by linear interpolation between them (per column); leading and
    trailing gaps hold the first and last valid row. Valid rows are returned untouched. Floating-point input
    keeps its dtype; other input comes back as float64. Raises ``ValueError`` when ``T > 0`` and no row is valid.
    """
    values = np.asarray(values)
    valid = np.asarray(valid)
    if values.ndim != 2:
        raise ValueError(f"values must be [T, D], got shape {values.shape}")
    if valid.dtype != np.bool_ or valid.shape != values.shape[:1]:
        raise ValueError(f"valid must be a bool array of shape ({len(values)},), got {valid.dtype} {valid.shape}")
    out_dtype = values.dtype if np.issubdtype(values.dtype, np.floating) else np.dtype(np.float64)
    out = values.astype(out_dtype)  # always a copy
    known = np.flatnonzero(valid)
    if len(values) and not len(known):
        raise ValueError("no valid rows to fill the gaps from")
    missing = np.flatnonzero(~valid)
    if not len(missing):
        return out

    # For each missing row, the nearest valid rows before and after; at the ends both are the same row.
    after = np.searchsorted(known, missing)
    right = known[np.minimum(after, len(known) - 1)]
    left = known[np.maximum(after - 1, 0)]
    span = right - left
    weight = np.divide(missing - left, span, out=np.zeros(len(missing)), where=span > 0)[:, None]
    # Interpolate in float64 so float16/float32 rows between distant anchors do not lose precision.
    source = values.astype(np.float64)
    filled = source[left] * (1.0 - weight) + source[right] * weight
    out[missing] = filled.astype(out_dtype)
    return out


def _smoothing_factor(cutoff: float | np.ndarray, period: float) -> float | np.ndarray:
    """Exponential smoothing factor of a first-order low-pass: ``1 / (1 + tau / period)``, ``tau = 1 / (2π fc)``."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / period)
