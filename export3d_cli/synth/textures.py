"""Procedural textures: the face's UV skin map, value noise, and clip backgrounds.

The face map is painted in the canonical mesh's UV space (v points down the
image, u = 0 on the subject's right), so features follow MediaPipe's topology:
lips filled inside the outer lip ring, brows drawn along the brow rings, a lash
line along the upper lids, blush on the cheeks, freckles and pores as noise.
"""

from __future__ import annotations

import numpy as np

from export3d_cli.face.canonical_face import canonical_face
from export3d_cli.synth.face_rig import (
    LEFT_BROW,
    LEFT_CHEEK,
    LEFT_EYE_UPPER,
    OUTER_LIPS,
    RIGHT_BROW,
    RIGHT_CHEEK,
    RIGHT_EYE_UPPER,
)
from export3d_cli.synth.identity import Identity

FACE_TEXTURE_SIZE = 512
NOSTRILS = (79, 309)


def value_noise(rng: np.random.Generator, height: int, width: int, cells: int, octaves: int = 4) -> np.ndarray:
    """Fractal value noise [H, W] in about [-1, 1]: random grids upsampled smoothly, halving per octave."""
    import cv2

    total = np.zeros((height, width), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        grid = max(2, cells * 2**octave)
        coarse = rng.uniform(-1.0, 1.0, (grid, grid)).astype(np.float32)
        total += amplitude * cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        norm += amplitude
        amplitude *= 0.5
    return total / norm


def _uv_pixels(indices: tuple[int, ...], size: int) -> np.ndarray:
    return canonical_face().uvs[list(indices)] * size


def face_texture(identity: Identity) -> np.ndarray:
    """The face albedo map [S, S, 3] float32 in [0, 1] for ``identity``."""
    import cv2

    size = FACE_TEXTURE_SIZE
    rng = np.random.default_rng([identity.seed, 1])
    skin = identity.skin.astype(np.float32)
    texture = np.ones((size, size, 3), np.float32) * skin
    tone = value_noise(rng, size, size, 3, octaves=3)[..., None]
    texture *= 1.0 + 0.06 * tone * identity.skin_detail
    pores = value_noise(rng, size, size, 48, octaves=2)[..., None]
    texture *= 1.0 + 0.035 * pores * identity.skin_detail
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    for cheek in (RIGHT_CHEEK, LEFT_CHEEK):
        cu, cv = _uv_pixels((cheek,), size)[0]
        blush = np.exp(-((xx - cu) ** 2 + (yy - cv) ** 2) / (2 * (0.06 * size) ** 2))[..., None]
        texture = texture * (1 - 0.25 * identity.blush * blush) + 0.25 * identity.blush * blush * np.array(
            [0.85, 0.35, 0.35], np.float32
        )
    if identity.freckles > 0:
        spots = value_noise(rng, size, size, 90, octaves=1)
        freckle = np.clip((spots - 0.55) * 4.0, 0.0, 1.0)[..., None] * identity.freckles
        band = np.exp(-((yy - 0.45 * size) ** 2) / (2 * (0.1 * size) ** 2))[..., None]
        texture *= 1.0 - 0.35 * freckle * band
    lips = np.zeros((size, size), np.float32)
    cv2.fillPoly(lips, [np.round(_uv_pixels(OUTER_LIPS, size) * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
    lips = cv2.GaussianBlur(lips, (0, 0), 1.5)[..., None]
    texture = texture * (1 - lips) + lips * identity.lips.astype(np.float32)
    brows = np.zeros((size, size), np.float32)
    for ring in (RIGHT_BROW, LEFT_BROW):
        points = _uv_pixels(ring, size)
        # The ring goes along the top edge then back along the bottom: fill it as a polygon.
        cv2.fillPoly(brows, [np.round(points * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
    hairs = 0.75 + 0.25 * value_noise(rng, size, size, 64, octaves=1)
    brows = cv2.GaussianBlur(brows, (0, 0), 2.0)[..., None] * hairs[..., None]
    texture = texture * (1 - 0.9 * brows) + 0.9 * brows * identity.brows.astype(np.float32)
    lashes = np.zeros((size, size), np.float32)
    for ring in (RIGHT_EYE_UPPER, LEFT_EYE_UPPER):
        points = np.round(_uv_pixels(ring, size) * 4).astype(np.int32)
        cv2.polylines(lashes, [points], False, 1.0, 3, cv2.LINE_AA, shift=2)
    lashes = cv2.GaussianBlur(lashes, (0, 0), 0.8)[..., None]
    texture *= 1.0 - 0.75 * lashes
    for nostril in NOSTRILS:
        nu, nv = _uv_pixels((nostril,), size)[0]
        shadow = np.exp(-((xx - nu) ** 2 + (yy - nv) ** 2) / (2 * (0.008 * size) ** 2))[..., None]
        texture *= 1.0 - 0.6 * shadow
    return np.clip(texture, 0.0, 1.0)


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A studio-like background [H, W, 3] float32: a soft gradient between two colours plus blotches."""
    base = rng.uniform(0.15, 0.9, 3)
    other = np.clip(base + rng.normal(0.0, 0.18, 3), 0.0, 1.0)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height + 1.0) / 2.0
    image = base * (1 - ramp[..., None]) + other * ramp[..., None]
    blotches = value_noise(rng, height, width, 3, octaves=3)[..., None]
    image *= 1.0 + rng.uniform(0.05, 0.25) * blotches
    return np.clip(image, 0.0, 1.0).astype(np.float32)
