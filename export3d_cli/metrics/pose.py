"""APD (average pose distance): mean absolute difference of head yaw, pitch and roll, in degrees.

Both sides are measured by the same face pipeline (MediaPipe landmarks, a
weighted Procrustes fit of the rigid ones; ``face.head_pose``). The mean runs
over the three angles and over frame pairs. The paper's APD compares the pose
of a 3DMM fit; the definition (mean absolute angle error) is the same.
"""

from __future__ import annotations

import numpy as np


def average_pose_distance(generated: np.ndarray, driving: np.ndarray) -> float | None:
    """APD of angles [T, 3] against angles [T, 3] (degrees); None for no pairs."""
    generated, driving = np.asarray(generated, np.float64), np.asarray(driving, np.float64)
    if generated.shape != driving.shape:
        raise ValueError(f"angle shapes differ: {generated.shape} vs {driving.shape}")
    if len(generated) == 0:
        return None
    # Wrap to (-180, 180] so a roll of 179° against -179° is 2°, not 358°.
    difference = (generated - driving + 180.0) % 360.0 - 180.0
    return float(np.abs(difference).mean())
