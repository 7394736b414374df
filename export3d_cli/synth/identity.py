"""A random synthetic identity: face shape, colours, hair, clothing and background.

Everything that stays fixed for one person across clips is drawn here from a
seeded generator, so identity ``i`` of a dataset is the same person whatever
order (or run) it is generated in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Albedo ranges in linear-ish sRGB [0, 1]; skin tones span light to deep.
_SKIN_TONES = np.array(
    [
        [0.96, 0.80, 0.69],
        [0.91, 0.72, 0.59],
        [0.84, 0.63, 0.50],
        [0.74, 0.53, 0.40],
        [0.62, 0.43, 0.31],
        [0.48, 0.32, 0.23],
        [0.36, 0.24, 0.17],
    ]
)
_HAIR_COLOURS = np.array(
    [
        [0.06, 0.05, 0.04],
        [0.16, 0.10, 0.06],
        [0.32, 0.20, 0.11],
        [0.55, 0.38, 0.20],
        [0.78, 0.62, 0.38],
        [0.55, 0.22, 0.10],
        [0.62, 0.62, 0.62],
    ]
)
_IRIS_COLOURS = np.array(
    [[0.25, 0.14, 0.07], [0.38, 0.24, 0.12], [0.20, 0.35, 0.55], [0.30, 0.45, 0.30], [0.45, 0.45, 0.40]]
)


@dataclass(frozen=True)
class FaceShape:
    """Deformations of the canonical face (unitless factors, or centimetres where noted)."""

    width: float  # x scale
    height: float  # y scale
    depth: float  # z scale
    nose_length: float  # cm forward at the nose tip
    nose_width: float  # x scale of the nose
    jaw_width: float  # extra x scale of the lower face
    chin_length: float  # cm down at the chin
    chin_forward: float  # cm forward at the chin
    eye_size: float  # scale of the eye openings
    cheekbones: float  # cm outward at the cheekbones
    mouth_width: float  # x scale of the mouth

    @classmethod
    def neutral(cls) -> FaceShape:
        """Every factor 1 and every offset 0: MediaPipe's canonical face itself (mirror-symmetric)."""
        return cls(1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0)


@dataclass(frozen=True)
class Identity:
    index: int
    shape: FaceShape
    skin: np.ndarray  # [3]
    lips: np.ndarray  # [3]
    hair: np.ndarray  # [3]
    brows: np.ndarray  # [3]
    iris: np.ndarray  # [3]
    clothing: np.ndarray  # [3]
    hair_volume: float  # cm added to the skull for the hair layer
    hair_length: float  # 0 = short (above the ears), 1 = down to the shoulders
    hairline: float  # cm: how far the hair comes down the forehead (negative = receding)
    bald: bool
    blush: float
    freckles: float
    skin_detail: float
    seed: int


def _mix(palette: np.ndarray, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """A colour between two neighbouring palette entries, with a little per-channel jitter."""
    position = rng.uniform(0, len(palette) - 1)
    low = int(np.floor(position))
    high = min(low + 1, len(palette) - 1)
    colour = palette[low] + (position - low) * (palette[high] - palette[low])
    return np.clip(colour * rng.uniform(1 - jitter, 1 + jitter, 3), 0.0, 1.0)


def random_identity(index: int, seed: int) -> Identity:
    """Identity ``index`` of a dataset generated with ``seed`` (independent of every other identity)."""
    rng = np.random.default_rng([seed, index, 0x1D])
    shape = FaceShape(
        width=rng.uniform(0.9, 1.1),
        height=rng.uniform(0.93, 1.07),
        depth=rng.uniform(0.9, 1.1),
        nose_length=rng.uniform(-0.35, 0.45),
        nose_width=rng.uniform(0.85, 1.2),
        jaw_width=rng.uniform(-0.08, 0.1),
        chin_length=rng.uniform(-0.4, 0.6),
        chin_forward=rng.uniform(-0.3, 0.4),
        eye_size=rng.uniform(0.88, 1.12),
        cheekbones=rng.uniform(-0.2, 0.35),
        mouth_width=rng.uniform(0.9, 1.12),
    )
    skin = _mix(_SKIN_TONES, rng, 0.04)
    lips = np.clip(skin * np.array([0.95, 0.68, 0.68]) * rng.uniform(0.85, 1.0), 0, 1)
    hair = _mix(_HAIR_COLOURS, rng, 0.08)
    brows = np.clip(hair * rng.uniform(0.6, 0.95) if hair.mean() < 0.5 else hair * 0.55, 0, 1)
    clothing = rng.uniform(0.05, 0.9, 3)
    return Identity(
        index=index,
        shape=shape,
        skin=skin,
        lips=lips,
        hair=hair,
        brows=brows,
        iris=_mix(_IRIS_COLOURS, rng, 0.1),
        clothing=clothing,
        hair_volume=rng.uniform(0.4, 2.2),
        hair_length=float(rng.choice([0.0, 0.3, 0.7, 1.0], p=[0.35, 0.25, 0.2, 0.2])),
        hairline=rng.uniform(-1.2, 1.0),
        bald=bool(rng.random() < 0.06),
        blush=rng.uniform(0.0, 0.5),
        freckles=float(rng.random() < 0.2) * rng.uniform(0.2, 0.8),
        skin_detail=rng.uniform(0.3, 1.0),
        seed=int(rng.integers(2**31)),
    )
